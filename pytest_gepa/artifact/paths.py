"""Where a target's files live.

``<test dir>/gepa_artifacts/<module>/<name>.json`` by default, or ``DIR/<test file's path from
rootdir, without .py>/<name>.json`` under ``--gepa-artifact-dir``, where the default name is the
test's name within its module, class included; cassettes and rejected candidates sit beside it.
"""

from __future__ import annotations

import re
from pathlib import Path


def default_name(nodeid: str) -> str:
    """The test's name within its module, class included, safe as a file name:
    ``test_x.py::TestA::test_p[a b]`` becomes ``TestA.test_p-a-b``."""
    within_module = ".".join(nodeid.split("::")[1:])
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", within_module).strip("-")


def artifact_folder(test_file: Path, rootdir: Path, artifact_dir: Path | None) -> Path:
    """The folder of one test file's artifacts and cassettes."""
    if artifact_dir is None:
        return test_file.parent / "gepa_artifacts" / test_file.stem
    try:
        relative = test_file.resolve().relative_to(rootdir.resolve())
    except ValueError:  # a test file outside rootdir: its name is all we can keep
        relative = Path(test_file.name)
    return artifact_dir / relative.with_suffix("")
