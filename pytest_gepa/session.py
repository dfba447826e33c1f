"""State of one pytest run's gepa targets, kept in ``config.stash``: settings, meter, reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_gepa.config import Settings

if TYPE_CHECKING:
    from pytest_gepa.report.model import TargetReport
    from pytest_gepa.usage import UsageMeter


@dataclass
class GepaSession:
    """Everything the run accumulates; the terminal summary and reports read from here."""

    settings: Settings
    reports: list[TargetReport] = field(default_factory=list)
    # Test files some of whose tests did not run (-k, --lf, -x): their unused files are not judged.
    partial_files: set[str] = field(default_factory=set)

    @cached_property
    def meter(self) -> UsageMeter:
        # Made on first use: a run with no gepa target never imports the LM layer.
        from pytest_gepa.usage import UsageMeter

        return UsageMeter()

    def unused_files(self) -> list[Path]:
        """Artifacts and cassettes of fully run test files that no target of this run owns."""
        from pytest_gepa.artifact.store import unused_files

        owners: dict[tuple[Path, str], set[str]] = {}
        for report in self.reports:
            test_file = report.nodeid.split("::")[0]
            owners.setdefault((Path(report.artifact).parent, test_file), set()).add(report.name)
        found: list[Path] = []
        for (directory, test_file), names in sorted(owners.items()):
            if test_file not in self.partial_files:
                found.extend(unused_files(directory, names))
        return found

    def sorted_reports(self) -> list[TargetReport]:
        """In node-id order, so the summary and the report read the same with or without xdist."""
        return sorted(self.reports, key=lambda r: (r.nodeid, r.name))


SESSION_KEY = pytest.StashKey[GepaSession]()
