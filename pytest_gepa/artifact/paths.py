"""Where a target's files live.

``<test dir>/gepa_artifacts/<module>/<name>.json`` by default, or ``DIR/<test file's path from
rootdir, without .py>/<name>.json`` under ``--gepa-artifact-dir``, where the default name is the
test's name within its module, class included; cassettes and rejected candidates sit beside it.
In a model matrix every file carries the model: ``<name>@<model-slug>.json``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

SLUG_LENGTH = 60  # long enough for any provider/model string; a .gguf path is cut and hashed


def default_name(nodeid: str) -> str:
    """The test's name within its module, class included, safe as a file name:
    ``test_x.py::TestA::test_p[a b]`` becomes ``TestA.test_p-a-b``."""
    within_module = ".".join(nodeid.split("::")[1:])
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", within_module).strip("-")


def model_slug(model: str) -> str:
    """A model string as a file-name part that is the same on every run and safe on every file
    system: ``openai/gpt-4o-mini`` becomes ``openai-gpt-4o-mini``. Only ASCII letters, digits,
    ``_``, ``-`` and inner dots survive (Windows drops trailing dots, and ``..`` reads as a path);
    a string that cannot be shown whole keeps a short hash of itself, so two models never share one."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model)
    slug = re.sub(r"\.{2,}", ".", slug).strip("-.")
    if len(slug) > SLUG_LENGTH or not slug:
        tag = hashlib.sha256(model.encode("utf-8")).hexdigest()[:8]
        slug = f"{slug[-(SLUG_LENGTH - 9):].strip('-.')}-{tag}".strip("-")
    return slug


def file_stem(name: str, model: str | None) -> str:
    """A target's file stem: its name, and in a model matrix ``@<model-slug>``."""
    return name if model is None else f"{name}@{model_slug(model)}"


def target_path(folder: Path, stem: str) -> Path:
    """``folder/<stem>.json`` with any ``..`` resolved (a stem may name a subfolder)."""
    return Path(os.path.normpath(folder / f"{stem}.json"))


def is_inside(folder: Path, path: Path) -> bool:
    """Does ``path`` stay inside ``folder``? A name such as ``'../x'`` or an absolute path would
    write over files the test never owned."""
    return Path(os.path.normpath(folder)) in path.parents


def plain_name(name: str) -> str:
    """A name that stays in its folder, from one that does not: its last part, made file-safe."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name).name).strip("-.") or "target"


def without_param(nodeid: str, param_id: str) -> str:
    """The node id without one parameter's id (the model's): ``t.py::test_p[a-openai/x]`` without
    ``openai/x`` is ``t.py::test_p[a]``. Returned unchanged when the id cannot be found."""
    head, sep, ids = nodeid.partition("[")
    if not sep or not ids.endswith("]"):
        return nodeid
    ids = ids[:-1]
    if ids == param_id:
        return head
    if ids.startswith(param_id + "-"):
        return f"{head}[{ids[len(param_id) + 1:]}]"
    if ids.endswith("-" + param_id):
        return f"{head}[{ids[:-len(param_id) - 1]}]"
    if f"-{param_id}-" in ids:
        return f"{head}[{ids.replace(f'-{param_id}-', '-', 1)}]"
    return nodeid


def artifact_folder(test_file: Path, rootdir: Path, artifact_dir: Path | None) -> Path:
    """The folder of one test file's artifacts and cassettes."""
    if artifact_dir is None:
        return test_file.parent / "gepa_artifacts" / test_file.stem
    try:
        relative = test_file.resolve().relative_to(rootdir.resolve())
    except ValueError:  # a test file outside rootdir: its name is all we can keep
        relative = Path(test_file.name)
    return artifact_dir / relative.with_suffix("")
