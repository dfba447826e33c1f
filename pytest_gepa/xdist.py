"""pytest-xdist support: workers ship their target reports, and which tests they collected and
deselected, to the controller, which prints the one summary, writes the one report, and alone
decides which files belong to no target (it sees every worker's tests). Registered only when
xdist is installed and active."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pytest_gepa.session import SESSION_KEY

WORKEROUTPUT_KEY = "pytest_gepa_reports"
CLAIMS_KEY = "pytest_gepa_claims"  # workerinput: the folder where workers claim artifact paths


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class WorkerReports:
    """On a worker: put this worker's reports into ``workeroutput`` (JSON only) at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        session = self.config.stash[SESSION_KEY]
        workeroutput: dict[str, Any] = self.config.workeroutput  # type: ignore[attr-defined]
        workeroutput[WORKEROUTPUT_KEY] = {
            "reports": [report.to_dict() for report in session.reports],
            "collected": {path: sorted(ids) for path, ids in session.collected.items()},
            "partial": sorted(session.partial),
            "models": dict(session.models),
        }


class ControllerReports:
    """On the controller: merge each worker's reports as the worker goes down."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.claims = Path(tempfile.mkdtemp(prefix="pytest-gepa-claims-"))

    def pytest_configure_node(self, node: Any) -> None:
        """Every worker claims its artifact paths in one shared folder: two targets of one run on
        different workers must not write the same file."""
        node.workerinput[CLAIMS_KEY] = str(self.claims)

    def pytest_unconfigure(self) -> None:
        shutil.rmtree(self.claims, ignore_errors=True)

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        from pytest_gepa.report.model import TargetReport

        output = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY, {})
        session = self.config.stash[SESSION_KEY]
        session.reports.extend(TargetReport.from_dict(data) for data in output.get("reports", []))
        for path, ids in output.get("collected", {}).items():
            session.collected.setdefault(path, set()).update(ids)
        session.partial.update(output.get("partial", []))
        session.models.update(output.get("models", {}))


def register(config: pytest.Config) -> None:
    """Add the worker or controller half when xdist is in play (the caller checked it is installed)."""
    if is_worker(config):
        config.pluginmanager.register(WorkerReports(config), "gepa-xdist-worker")
        claims = config.workerinput.get(CLAIMS_KEY)  # type: ignore[attr-defined]
        if claims:
            config.stash[SESSION_KEY].claims_dir = Path(claims)
    elif getattr(config.option, "numprocesses", None) or getattr(config.option, "dist", "no") != "no":
        config.pluginmanager.register(ControllerReports(config), "gepa-xdist-controller")
