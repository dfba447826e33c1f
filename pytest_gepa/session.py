"""State of one pytest run's gepa targets, kept in ``config.stash``: settings, meter, reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from pytest_gepa.lms import UsageMeter
from pytest_gepa.report import TargetReport
from pytest_gepa.settings import Settings


@dataclass
class GepaSession:
    """Everything the run accumulates; the terminal summary and reports read from here."""

    settings: Settings
    meter: UsageMeter = field(default_factory=UsageMeter)
    reports: list[TargetReport] = field(default_factory=list)

    def sorted_reports(self) -> list[TargetReport]:
        """In node-id order, so the summary and the report read the same with or without xdist."""
        return sorted(self.reports, key=lambda r: (r.nodeid, r.name))


SESSION_KEY = pytest.StashKey[GepaSession]()
