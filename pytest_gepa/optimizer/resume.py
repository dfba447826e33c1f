"""GEPA's run state kept between runs, so an interrupted compile can continue (``--gepa-resume``).

Each target's state lives in its own folder under pytest's cache directory (which pytest keeps out
of git), never anywhere a repository could carry: ``gepa_state.bin`` is a pickle, and loading one
runs code. Beside it, ``resume.json`` records the fingerprints of what the run was about (program
and its source, data, metric, budget, seed, options, the three models, dspy's and gepa's versions),
so a state for other inputs is discarded with its reason; the digest of the state file as gepa
saved it, so a truncated or changed one is never handed to gepa; and what gepa does not save itself
(its random generator, the batch sampler's epoch, the progress seen).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_gepa._io import atomic_write
from pytest_gepa.canonical import plain
from pytest_gepa.code_reads import source_text
from pytest_gepa.errors import describe_error

RESUME_FOLDER = "gepa-resume"  # under pytest's cache directory: .pytest_cache/d/gepa-resume/
INFO_FILE = "resume.json"
RUN_DIR = "gepa"  # GEPA's own run_dir, where it keeps gepa_state.bin
STATE_FILE = "gepa_state.bin"
# 2: the three resolved models, the versions, the program's source and the state file's digest.
INFO_VERSION = 2

# What each fingerprint is about, in the order a reason names them.
WHAT = {"program": "the program", "source": "the program's source", "data": "the data", "metric": "the metric",
        "budget": "the budget", "seed": "the seed", "options": "the optimizer options",
        "task_model": "the task model", "reflection_model": "the reflection model",
        "judge_model": "the judge model", "dspy": "the dspy version", "gepa": "the gepa version"}
# Fingerprints a person can read: a reason shows what they were and what they are now.
SHOWN = ("budget", "seed", "task_model", "reflection_model", "judge_model", "dspy", "gepa")


def fingerprint(*, program: str, source: str, data: str, metric: str, budget: object, seed: object,
                options: dict[str, Any], models: dict[str, str | None], versions: dict[str, str]) -> dict[str, str]:
    """What the run is about: a state saved for anything else would continue the wrong run.

    ``models`` holds the resolved model of each role (``task``, ``reflection``, ``judge``; None
    for a role the compile does not use), ``versions`` dspy's and gepa's.
    """
    shown = json.dumps(plain({key: repr(value) for key, value in sorted(options.items())}), sort_keys=True)
    return {
        "program": program,
        "source": source,
        "data": data,
        "metric": metric,
        "budget": str(budget),
        "seed": str(seed),
        "options": hashlib.sha256(shown.encode()).hexdigest()[:16],
        **{f"{role}_model": str(models.get(role) or "none") for role in ("task", "reflection", "judge")},
        "dspy": str(versions.get("dspy")),
        "gepa": str(versions.get("gepa")),
    }


def source_fingerprint(program: Any) -> str:
    """A hash of the source of the program's module classes (the program's and its sub-modules'):
    a changed ``forward`` makes another run even when every signature is the same."""
    classes = [type(program)]
    for _, module in getattr(program, "named_sub_modules", lambda: [])():
        if type(module) not in classes:
            classes.append(type(module))
    texts = [source_text(cls) for cls in classes]  # a class defined where no source is kept: its name
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]


def changed_reason(saved: dict[str, str], now: dict[str, str]) -> str | None:
    """'the data and the metric changed since the interrupted compile; starting afresh', or None."""
    changed = []
    for key in WHAT:
        if saved.get(key) != now.get(key):
            shown = f" ({saved.get(key)!r}, now {now.get(key)!r})" if key in SHOWN else ""
            changed.append(WHAT[key] + shown)
    if not changed:
        return None
    named = changed[0] if len(changed) == 1 else f"{', '.join(changed[:-1])} and {changed[-1]}"
    return f"{named} changed since the interrupted compile; starting afresh"


def _folder_name(nodeid: str, name: str) -> str:
    # Readable for a person looking in the cache, unique by the hash (node ids hold '/', '[', ':').
    # One folder per target whatever its model: a state for another model is found, and discarded
    # with that reason.
    key = f"{nodeid}\0{name}"
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{nodeid}-{name}").strip("_")[:80]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class RunState:
    """One target's kept state: GEPA's ``run_dir`` and the ``resume.json`` beside it."""

    def __init__(self, folder: Path, fingerprints: dict[str, str], *, resuming: bool,
                 saved: dict[str, Any] | None) -> None:
        self.folder = folder
        self.fingerprints = fingerprints
        self.resuming = resuming
        self.saved = saved if resuming else None  # the interrupted run's resume.json

    @property
    def run_dir(self) -> Path:
        return self.folder / RUN_DIR

    @property
    def info_path(self) -> Path:
        return self.folder / INFO_FILE

    def load_extra(self) -> dict[str, Any] | None:
        """What gepa does not save (random state, sampler, progress) as the interrupted run left it."""
        extra = (self.saved or {}).get("extra")
        return extra if isinstance(extra, dict) else None

    def save_extra(self, extra: dict[str, Any]) -> None:
        """Called each time gepa saves its state: the two files then describe the same iteration,
        and the digest says the state file is the one gepa wrote."""
        atomic_write(self.info_path, json.dumps({
            "version": INFO_VERSION, "fingerprint": self.fingerprints, "extra": extra,
            "state_sha256": _digest(self.run_dir / STATE_FILE)}, sort_keys=True) + "\n")

    def remove(self) -> None:
        """A compile that completed needs no state: the next one starts afresh."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _read_info(folder: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("version") == INFO_VERSION else None


def _progress_of(info: dict[str, Any]) -> tuple[int, int]:
    extra = info.get("extra") or {}
    return int(extra.get("iteration", 0) or 0), int(extra.get("metric_calls", 0) or 0)


def _discard(folder: Path) -> str | None:
    """Remove a state folder; why it could not be, or None once it is gone."""
    if folder.is_symlink():
        # rmtree refuses a link, and a link may lead anywhere: a state there is never ours.
        return "it is a symbolic link, not a folder pytest-gepa made"
    try:
        if folder.is_dir():
            shutil.rmtree(folder)
        else:
            folder.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    return None if not folder.exists() else "it is still there after removing it"


def _unloadable(state_file: Path) -> str | None:
    """Why gepa could not load this state (it is the file gepa saved, yet a class it names may be
    gone), or None. Loaded as gepa loads it, and only once its digest says it is gepa's own."""
    import pickle

    try:
        with state_file.open("rb") as stream:
            pickle.load(stream)
    except Exception as error:  # whatever unpickling raises (a module gone, a truncated file)
        return describe_error(error)
    return None


def _verdict(folder: Path, fingerprints: dict[str, str], nodeid: str, resume: bool) -> tuple[bool, str | None]:
    """(resume it?, what to say) for the state found in ``folder``."""
    state_file = folder / RUN_DIR / STATE_FILE
    if folder.is_symlink() or not folder.is_dir():
        return False, None  # not a folder we made: removing it says so
    info = _read_info(folder)
    if not state_file.is_file():
        return False, None  # killed before gepa's first save: nothing to continue
    if info is None:
        return False, (f"the saved compile state '{state_file}' has no readable '{INFO_FILE}' (or one from another "
                       "pytest-gepa); discarded it, starting afresh")
    if info.get("state_sha256") != _digest(state_file):
        return False, (f"the saved compile state '{state_file}' is unreadable: it is not the file gepa saved "
                       "(truncated or changed since); discarded it, starting afresh")
    reason = changed_reason(dict(info.get("fingerprint") or {}), fingerprints)
    if reason is not None:
        return False, reason
    if resume:
        problem = _unloadable(state_file)
        if problem is not None:
            return False, (f"the saved compile state '{state_file}' cannot be loaded ({problem}); discarded it, "
                           "starting afresh")
        return True, None
    iteration, calls = _progress_of(info)
    return False, (f"an interrupted compile saved its state at iteration {iteration} ({calls} metric calls spent); "
                   f"`{resume_command(nodeid)}` would continue it. Starting afresh.")


def open_state(root: Path | None, *, nodeid: str, name: str, fingerprints: dict[str, str], resume: bool,
               progress: Callable[[str], None], note_once: Callable[[str], bool]) -> RunState | None:
    """This target's state folder, saying what happens to a state found there.

    None (no state kept, none loaded) without a cache, or when a state found there cannot be
    removed: gepa loads whatever state its run_dir holds, so one we would not resume must be gone.
    """
    label = f"  {name}:"
    if root is None:
        if note_once("no-cache"):
            progress("no compile state is kept (pytest's cache is disabled, -p no:cacheprovider): an interrupted "
                     "compile will start over")
        return None
    folder = root / _folder_name(nodeid, name)
    if not folder.exists() and not folder.is_symlink():
        return RunState(folder, fingerprints, resuming=False, saved=None)
    resuming, said = _verdict(folder, fingerprints, nodeid, resume)
    if said is not None:
        progress(f"{label} {said}")
    if resuming:
        return RunState(folder, fingerprints, resuming=True, saved=_read_info(folder))
    why = _discard(folder)
    if why is not None:
        progress(f"{label} the compile state '{folder}' cannot be removed ({why}); this compile neither loads nor "
                 f"keeps a state. Remove it: rm -rf {shlex.quote(str(folder))}")
        return None
    return RunState(folder, fingerprints, resuming=False, saved=None)


def resumed_line(state: RunState) -> str | None:
    """The progress line of a run that continues: at which iteration, with how much already spent."""
    if not state.resuming:
        return None
    extra = state.load_extra() or {}
    iteration, calls = int(extra.get("iteration", 0) or 0), int(extra.get("metric_calls", 0) or 0)
    budget = extra.get("budget")
    of = f" of {budget}" if budget else ""
    return f"resumed at iteration {iteration} with {calls}{of} metric calls already spent"


def resume_command(nodeid: str) -> str:
    return f"pytest --gepa-compile --gepa-resume {nodeid}"
