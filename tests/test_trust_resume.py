"""Trust in a resumed compile (issue 22): a kept state continues only the run it was saved for
(the same resolved models, versions and program source), only from pytest's cache, only when it is
the file gepa wrote; and --gepa-resume without a cache is said, not silently paid for again."""

from __future__ import annotations

import pytest
from conftest import TriageProject

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
