"""Trust in a resumed compile (issue 22): a kept state continues only the run it was saved for
(the same resolved models, versions and program source), only from pytest's cache, only when it is
the file gepa wrote; and --gepa-resume without a cache is said, not silently paid for again."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from conftest import TriageProject, literal
from test_option_gepa_resume import INTERRUPTIBLE_TEST, _compile


@pytest.fixture
def interruptible(pytester: pytest.Pytester) -> TriageProject:
    project = TriageProject(pytester)
    project.write_test(source=INTERRUPTIBLE_TEST)
    return project


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
