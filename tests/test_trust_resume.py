"""Trust in a resumed compile (issue 22): a kept state continues only the run it was saved for
(the same resolved models, versions and program source), only from pytest's cache, only when it is
the file gepa wrote; and --gepa-resume without a cache is said, not silently paid for again."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
import world
from conftest import TriageProject, literal
from test_option_gepa_resume import INTERRUPTIBLE_TEST, _compile, _interrupt_at, _state_files

RESUME_ROOT = Path(".pytest_cache", "d", "gepa-resume")

# The task LM as a user's own dspy.LM, named by TASK_MODEL; the world answers it as the task role.
OWN_TASK_LM = '''
import os

import dspy
import pytest
import world

@pytest.fixture(scope="session")
def gepa_task_lm():
    engine = world.ScriptedEngine("task")
    return dspy.LM(os.environ["TASK_MODEL"], engine=engine, async_engine=world.AsyncScriptedEngine(engine),
                   cache=False)

@pytest.fixture(scope="session")
def gepa_reflection_lm():
    return world.scripted_lm("reflection")
'''

# The task LM from --gepa-task-lm (the plugin's own fixture), reached over HTTP; reflection in process.
FLAG_TASK_LM = '''
import pytest
import world

@pytest.fixture(scope="session")
def gepa_reflection_lm():
    return world.scripted_lm("reflection")
'''


def _state_folder(project: TriageProject) -> Path:
    [folder] = [path for path in (project.root / RESUME_ROOT).iterdir()]
    return folder


def _fingerprint(project: TriageProject) -> dict[str, str]:
    info = json.loads((_state_folder(project) / "resume.json").read_text())
    return dict(info["fingerprint"])


@pytest.fixture
def interruptible(pytester: pytest.Pytester) -> TriageProject:
    project = TriageProject(pytester)
    project.write_test(source=INTERRUPTIBLE_TEST)
    return project


# -- 1. another model's state is never continued ---------------------------------------------------


def test_a_state_for_another_task_lm_of_the_users_own_is_discarded_with_its_reason(
        interruptible: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    interruptible.pytester.makeconftest(OWN_TASK_LM)
    monkeypatch.setenv("TASK_MODEL", "scripted/first")
    assert _interrupt_at(interruptible.pytester, monkeypatch, 20).ret == pytest.ExitCode.INTERRUPTED
    saved = _fingerprint(interruptible)
    assert (saved["task_model"], saved["reflection_model"], saved["judge_model"]) == (
        "scripted/first", "scripted/reflection", "none")
    assert saved["dspy"][0].isdigit() and saved["gepa"][0].isdigit()

    monkeypatch.setenv("TASK_MODEL", "scripted/second")
    result = _compile(interruptible.pytester, "--gepa-resume")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([literal("[gepa]   test_triage_prompt: the task model ('scripted/first', now "
                                         "'scripted/second') changed since the interrupted compile; starting afresh")])
    result.stdout.no_fnmatch_line("*resumed at iteration*")
    artifact = json.loads(interruptible.artifact.read_text())
    assert artifact["provenance"]["models"]["task"] == "scripted/second"
    assert _state_files(interruptible.root) == []


def test_a_state_for_another_gepa_task_lm_is_discarded_with_its_reason(
        interruptible: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    interruptible.pytester.makeconftest(FLAG_TASK_LM)
    with world.ScriptedServer() as server:
        monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        first = _interrupt_at(interruptible.pytester, monkeypatch, 20, "--gepa-task-lm", "openai/task")
        assert first.ret == pytest.ExitCode.INTERRUPTED, first.stdout.str()
        assert _fingerprint(interruptible)["task_model"] == "openai/task"
        result = _compile(interruptible.pytester, "--gepa-resume", "--gepa-task-lm", "openai/other/task")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*the task model ('openai/task', now 'openai/other/task') changed since the "
                                 "interrupted compile; starting afresh"])
    result.stdout.no_fnmatch_line("*resumed at iteration*")


def test_a_changed_forward_is_another_program(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    project = TriageProject(pytester)
    module = INTERRUPTIBLE_TEST.replace("dspy.ChainOfThought(Triage)", "Pipeline()").replace(
        "def test_triage_prompt", '''class Pipeline(dspy.Module):
    def __init__(self):
        super().__init__()
        self.classify = dspy.ChainOfThought(Triage)

    def forward(self, ticket):
        return self.classify(ticket=ticket)

def test_triage_prompt''')
    project.write_test(source=module)
    assert _interrupt_at(pytester, monkeypatch, 20).ret == pytest.ExitCode.INTERRUPTED
    path = project.root / "test_triage.py"
    path.write_text(path.read_text().replace("return self.classify(ticket=ticket)",
                                             "return self.classify(ticket=ticket.strip())"))
    result = _compile(pytester, "--gepa-resume")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_triage_prompt: the program's source changed since the interrupted compile; "
                                 "starting afresh"])


def test_the_models_are_resolved_for_each_role_as_the_compile_will_use_them(tmp_path: Path) -> None:
    import dspy

    from pytest_gepa.flows.target_lms import TargetLMs
    from pytest_gepa.metrics import exact_match
    from pytest_gepa.rubric import load_rubric
    from pytest_gepa.usage import UsageMeter

    fixtures = {role: world.scripted_lm(role) for role in ("task", "reflection", "judge")}
    lms = TargetLMs(get_lm=fixtures.__getitem__, meter=UsageMeter(), cassette=None, replay=False, nodeid="t")
    program = dspy.ChainOfThought("ticket -> category")
    rubric = "name: triage\ncriteria:\n  - name: correct\n    description: The category is right.\n"
    (tmp_path / "plain.yaml").write_text(rubric)
    (tmp_path / "own.yaml").write_text("judge_lm: openai/own-judge\n" + rubric)
    assert lms.resolved_models(program, exact_match("category")) == {
        "task": "scripted/task", "reflection": "scripted/reflection", "judge": None}
    assert lms.resolved_models(program, load_rubric(tmp_path / "plain.yaml"))["judge"] == "scripted/judge"
    assert lms.resolved_models(program, load_rubric(tmp_path / "own.yaml"))["judge"] == "openai/own-judge"
    # A predictor with its own LM talks to that model whatever the task LM is.
    program.predict.lm = dspy.LM("scripted/own", engine=world.ScriptedEngine("task"))
    assert lms.resolved_models(program, exact_match("category"))["task"] == "scripted/task; predict=scripted/own"


# -- 2. --gepa-resume without pytest's cache -----------------------------------------------------------


@pytest.mark.parametrize("how", [("--gepa-resume",), ("-o", "gepa_resume=true")], ids=["flag", "ini"])
def test_resume_without_the_cache_provider_is_a_usage_error(triage_project: TriageProject,
                                                            how: tuple[str, ...]) -> None:
    result = triage_project.compile(*how)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    where = "--gepa-resume" if how[0] == "--gepa-resume" else "the ini key gepa_resume"
    result.stderr.fnmatch_lines([f"*{where} continues an interrupted compile from the state kept in pytest's cache "
                                 "directory, but pytest's cache provider is disabled (-p no:cacheprovider*"])
    assert not triage_project.artifact.exists()


# -- 4. no option points gepa at a state folder of the repository's ---------------------------------


class _Planted:
    """A committed 'state' whose loading writes a file: proof that the pickle was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('unpickled')",)


def _plant_state(folder: Path, marker: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gepa_state.bin").write_bytes(pickle.dumps(_Planted(marker)))


@pytest.mark.parametrize("cache", ["cache", "no cache"])
@pytest.mark.parametrize(("option", "shown"), [
    ("log_dir='state'", "log_dir='state'"),
    ("gepa_kwargs={'run_dir': 'state'}", "gepa_kwargs={'run_dir': 'state'}"),
    ("run_dir='state'", "run_dir='state'"),
], ids=["log_dir", "gepa_kwargs run_dir", "run_dir"])
def test_an_option_pointing_gepa_at_a_state_folder_is_refused_and_nothing_is_unpickled(
        interruptible: TriageProject, tmp_path: Path, cache: str, option: str, shown: str) -> None:
    marker = tmp_path / "unpickled"
    _plant_state(interruptible.root / "state", marker)
    path = interruptible.root / "test_triage.py"
    path.write_text(path.read_text().replace("metric=metric)\n", f"metric=metric, {option})\n", 1))
    result = (_compile(interruptible.pytester) if cache == "cache" else interruptible.compile())
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*gepa.compile(..., {literal(shown)}): GEPA would load its run state from that "
                                 "folder, and that state is a pickle*"])
    assert not marker.exists(), "the committed state was unpickled"
    assert not interruptible.artifact.exists()


# -- 7. a corrupt state, and one that cannot be removed -------------------------------------------------


def test_a_truncated_state_is_named_discarded_and_the_compile_starts_afresh(
        interruptible: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _interrupt_at(interruptible.pytester, monkeypatch, 20).ret == pytest.ExitCode.INTERRUPTED
    state = _state_folder(interruptible) / "gepa" / "gepa_state.bin"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    result = _compile(interruptible.pytester, "--gepa-resume")
    result.assert_outcomes(passed=1)
    shown = state.relative_to(interruptible.root)
    result.stdout.fnmatch_lines([f"*test_triage_prompt: the saved compile state '*{literal(str(shown))}' is "
                                 "unreadable: it is not the file gepa saved (truncated or changed since); discarded "
                                 "it, starting afresh"])
    result.stdout.no_fnmatch_line("*resumed at iteration*")
    assert interruptible.artifact.exists()
    assert _state_files(interruptible.root) == []


def test_a_state_gepa_saved_that_no_longer_loads_is_named_discarded_and_the_compile_starts_afresh(
        interruptible: TriageProject, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _interrupt_at(interruptible.pytester, monkeypatch, 20).ret == pytest.ExitCode.INTERRUPTED
    folder = _state_folder(interruptible)
    state = folder / "gepa" / "gepa_state.bin"
    # The file gepa saved, by its digest, that cannot be unpickled now (as when a class it names is gone).
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    info = json.loads((folder / "resume.json").read_text())
    info["state_sha256"] = hashlib.sha256(state.read_bytes()).hexdigest()
    (folder / "resume.json").write_text(json.dumps(info))
    result = _compile(interruptible.pytester, "--gepa-resume")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*test_triage_prompt: the saved compile state '*{literal(state.name)}' cannot be "
                                 "loaded (UnpicklingError: pickle data was truncated); discarded it, starting afresh"])
    result.stdout.no_fnmatch_line("*resumed at iteration*")
    assert _state_files(interruptible.root) == []


@pytest.mark.parametrize("resume", [True, False], ids=["resume", "no resume"])
def test_a_state_that_cannot_be_removed_is_never_loaded(interruptible: TriageProject, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, resume: bool) -> None:
    assert _interrupt_at(interruptible.pytester, monkeypatch, 20).ret == pytest.ExitCode.INTERRUPTED
    folder = _state_folder(interruptible)
    # A folder rmtree refuses to remove (the tests run as root, so permissions would not stop it):
    # a link to the state moved elsewhere, whose pickle now writes a file when it is loaded.
    elsewhere = tmp_path / "elsewhere"
    shutil.move(folder, elsewhere)
    folder.symlink_to(elsewhere, target_is_directory=True)
    marker = tmp_path / "unpickled"
    _plant_state(elsewhere / "gepa", marker)
    result = _compile(interruptible.pytester, *(["--gepa-resume"] if resume else []))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*test_triage_prompt: the compile state '*{folder.name}' cannot be removed (it is "
                                 "a symbolic link, not a folder pytest-gepa made); this compile neither loads nor "
                                 "keeps a state. Remove it: rm -rf *"])
    assert not marker.exists(), "a state that could not be removed was loaded"
    assert interruptible.artifact.exists()
