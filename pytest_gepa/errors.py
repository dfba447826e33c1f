"""The errors and warnings pytest-gepa raises, each with a message a person can act on.

A ``GepaError`` raised while a test runs is turned into one readable test failure (no deep
traceback); see ``plugin.py``. Bad configuration is ``pytest.UsageError`` instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest


class GepaError(Exception):
    """A failure of the build step that the user can fix; its message says how."""


class DataFileError(GepaError):
    """A labeled-examples file that cannot be used, with the file and line at fault."""

    def __init__(self, path: Path | str, problem: str, *, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {problem}")


class RubricError(GepaError):
    """A rubric file that cannot be used, naming the file, the field and what was expected."""


class ArtifactError(GepaError):
    """A compiled artifact that is missing, unreadable, or no longer matches its target."""


class StaleArtifactError(ArtifactError):
    """The program or task model changed since the artifact was compiled."""


class LMError(GepaError):
    """An LM call failed (connection, HTTP error, timeout): an infrastructure error, not a score."""


class OptimizerError(GepaError):
    """The optimizer ran but produced nothing usable (for example the reflection LM never answered)."""


class CassetteMissError(GepaError):
    """Replay mode met an LM call that no cassette holds."""


class GepaWarning(pytest.PytestWarning):
    """Something changed that does not fail the gate but deserves a look (data or metric drift)."""
