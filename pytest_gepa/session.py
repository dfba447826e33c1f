"""State of one pytest run's gepa targets, kept in ``config.stash``: settings, meter, reports, the
files each target owns, the cassettes open, and which tests ran (for the unused-files list)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_gepa.config import Settings
from pytest_gepa.errors import GepaError

if TYPE_CHECKING:
    from pytest_gepa.cassette import Cassette
    from pytest_gepa.report.model import TargetReport
    from pytest_gepa.usage import UsageMeter


class GepaSession:
    """Everything the run accumulates; the terminal summary and reports read from here.

    A plain class, not a dataclass: this module loads in every pytest run, and a dataclass builds its
    methods from generated source at each import.
    """

    def __init__(self, settings: Settings, *, cache: pytest.Cache | None = None,
                 claims_dir: Path | None = None) -> None:
        self.settings = settings
        self.reports: list[TargetReport] = []
        # Which node id owns each artifact path: two targets of one run must never share a file.
        self.owners: dict[Path, str] = {}
        # On an xdist worker: the folder where every worker of the run claims its artifact paths, so
        # two targets on different workers cannot share a file either.
        self.claims_dir = claims_dir
        self.cassettes: dict[Path, Cassette] = {}
        # The cassettes beside an artifact: in a compile they are written only with their artifact.
        self.target_cassettes: set[Path] = set()
        # The cassette of the test running now, for LMs used outside compile/gate (record / replay).
        self.test_cassette_path: Path | None = None
        self.test_nodeid: str | None = None
        # Tests collected per test file, and the tests whose call phase ran: a file counts as run
        # whole (its unused files may be listed) only when every test in it ran.
        self.collected: dict[str, set[str]] = {}
        self.partial: set[str] = set()
        self.ran: set[str] = set()
        # In a model matrix: each collected test's model (its files are <name>@<model-slug>.*).
        self.models: dict[str, str] = {}
        self.report_problem: str | None = None  # why --gepa-report could not be written
        self.summary_problem: str | None = None  # why the $GITHUB_STEP_SUMMARY job summary could not be written
        # pytest's cache (None under -p no:cacheprovider): where compile state is kept, out of git.
        self.cache = cache
        self.notes: set[str] = set()

    def resume_root(self) -> Path | None:
        """The folder of every target's compile state, made on first use; None without pytest's cache."""
        if self.cache is None:
            return None
        return self.cache.mkdir("gepa-resume")

    def note_once(self, key: str) -> bool:
        """True the first time ``key`` is noted in this run: a thing worth saying once, not per target."""
        first = key not in self.notes
        self.notes.add(key)
        return first

    @cached_property
    def meter(self) -> UsageMeter:
        # Made on first use: a run with no gepa target never imports the LM layer.
        from pytest_gepa.usage import UsageMeter

        return UsageMeter()

    def claim(self, path: Path, nodeid: str) -> None:
        """Make ``path`` this node id's; a second target resolving to the same file is an error."""
        key = path.resolve()
        owner = self.owners.setdefault(key, nodeid)
        if owner == nodeid and self.claims_dir is not None:
            owner = _claim_across_workers(self.claims_dir, key, nodeid)
        if owner != nodeid:
            raise GepaError(f"{nodeid!r} and {owner!r} both resolve to the artifact '{path}'; give one of them "
                            "its own name with gepa.compile(..., name='...')")

    def cassette(self, path: Path, nodeid: str | None = None) -> Cassette | None:
        """The one ``Cassette`` object of ``path`` in this run (a test and its target may share it);
        under replay None when there is no such file."""
        from pytest_gepa.cassette import Cassette

        key = path.resolve()
        if key not in self.cassettes:
            if self.settings.replay:
                try:
                    self.cassettes[key] = Cassette.load(path, target=nodeid or "")
                except FileNotFoundError:
                    return None
            else:
                self.cassettes[key] = Cassette(path, target=nodeid or "")
        return self.cassettes[key]

    def open_target_cassette(self, artifact: Path, nodeid: str) -> Cassette | None:
        if not self.settings.cassettes:
            return None
        from pytest_gepa.cassette import cassette_path

        path = cassette_path(artifact)
        self.target_cassettes.add(path.resolve())
        cassette = self.cassette(path, nodeid)
        if cassette is None:
            raise GepaError(f"--gepa-replay: no cassette for {nodeid!r} at '{path}'. Record one with "
                            f"`pytest --gepa-record --gepa-compile {nodeid}`.")
        return cassette

    def current_test_cassette(self) -> Cassette | None:
        """The running test's own cassette (``<name>.cassette.jsonl``), for the gepa_*_lm fixtures."""
        if self.test_cassette_path is None:
            return None
        return self.cassette(self.test_cassette_path, self.test_nodeid)

    def through_test_cassette(self, lm: Any, role: str) -> Any:
        """``lm`` answered from (replay) or recorded into (record) the running test's own cassette;
        unchanged when the run uses no cassettes."""
        if not self.settings.cassettes:
            return lm
        from pytest_gepa.cassette import wrap

        return wrap(lm, role=role, cassette=self.current_test_cassette, replay=self.settings.replay)

    def save_cassette(self, path: Path) -> None:
        cassette = self.cassettes.get(path.resolve())
        if self.settings.record and cassette is not None and cassette.entries:
            cassette.save()

    def close_test_cassette(self, *, passed: bool) -> None:
        """At a test's teardown: save what its own cassette recorded. A cassette beside an artifact
        is written, like the artifact, only for a passed compile; any other records whatever the
        test's outcome (an xfailed eval must replay too), as a gate's does."""
        path = self.test_cassette_path
        if path is not None and (passed or not (self.settings.compile and path.resolve() in self.target_cassettes)):
            self.save_cassette(path)
        self.test_cassette_path = self.test_nodeid = None

    def test_stem(self, nodeid: str) -> str:
        """The stem of a test's own files (its cassette): its name, and in a matrix ``@<model-slug>``
        of the model, so the test and its default target share one cassette as without a matrix."""
        from pytest_gepa.artifact.paths import default_name, file_stem, without_param

        model = self.models.get(nodeid)
        return file_stem(default_name(nodeid if model is None else without_param(nodeid, model)), model)

    def unused_files(self) -> list[Path]:
        """Artifacts and cassettes of wholly run test files that no target of this run owns."""
        from pytest_gepa.artifact.store import unused_files

        owners: dict[tuple[Path, str], set[str]] = {}
        for report in self.reports:
            test_file = report.nodeid.split("::")[0]
            # A test's own cassette (LM calls outside compile/gate) carries the test's name.
            tests = {self.test_stem(nodeid) for nodeid in self.collected.get(test_file, ())}
            stem = Path(report.artifact).name.removesuffix(".json")
            owners.setdefault((Path(report.artifact).parent, test_file), set()).update({stem, *tests})
        found: list[Path] = []
        for (directory, test_file), names in sorted(owners.items()):
            if self.ran_whole(test_file):
                found.extend(unused_files(directory, names))
        return found

    def ran_whole(self, test_file: str) -> bool:
        """Every test of ``test_file`` was collected, selected and ran (none skipped or deselected)."""
        tests = self.collected.get(test_file, set())
        return bool(tests) and test_file not in self.partial and tests <= self.ran

    def sorted_reports(self) -> list[TargetReport]:
        """In node-id order, so the summary and the report read the same with or without xdist; a
        matrix target's models next to each other, by model name."""
        from pytest_gepa.report.model import report_order

        return sorted(self.reports, key=report_order)


def _claim_across_workers(claims_dir: Path, key: Path, nodeid: str) -> str:
    """The node id that owns ``key`` in the whole run: the first worker to link its claim file wins
    (``os.link`` is atomic and never replaces, so a claim is complete whenever it is visible)."""
    import hashlib
    import os
    import tempfile

    claim = claims_dir / hashlib.sha256(str(key).encode()).hexdigest()
    fd, draft = tempfile.mkstemp(dir=claims_dir, prefix=".draft-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(nodeid)
        os.link(draft, claim)
    except FileExistsError:
        return claim.read_text(encoding="utf-8")
    finally:
        os.unlink(draft)
    return nodeid


SESSION_KEY = pytest.StashKey[GepaSession]()
