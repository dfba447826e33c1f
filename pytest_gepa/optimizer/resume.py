"""GEPA's run state kept between runs, so an interrupted compile can continue (``--gepa-resume``).

Each target's state lives in its own folder under pytest's cache directory (which pytest keeps out
of git), never anywhere a repository could carry: ``gepa_state.bin`` is a pickle, and loading one
runs code. Beside it, ``resume.json`` records the fingerprints of what the run was about (program,
data, metric, budget, seed, options), so a state for other inputs is discarded with its reason, and
what gepa does not save itself (its random generator, the batch sampler's epoch, the progress seen).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_gepa._io import atomic_write
from pytest_gepa.canonical import plain

RESUME_FOLDER = "gepa-resume"  # under pytest's cache directory: .pytest_cache/d/gepa-resume/
INFO_FILE = "resume.json"
RUN_DIR = "gepa"  # GEPA's own run_dir, where it keeps gepa_state.bin
STATE_FILE = "gepa_state.bin"
INFO_VERSION = 1

# What each fingerprint is about, in the order a reason names them.
WHAT = {"program": "the program", "data": "the data", "metric": "the metric", "budget": "the budget",
        "seed": "the seed", "options": "the optimizer options", "model": "the model"}


def fingerprint(*, program: str, data: str, metric: str, budget: object, seed: object, options: dict[str, Any],
                model: object) -> dict[str, str]:
    """What the run is about: a state saved for anything else would continue the wrong run."""
    shown = json.dumps(plain({key: repr(value) for key, value in sorted(options.items())}), sort_keys=True)
    return {
        "program": program,
        "data": data,
        "metric": metric,
        "budget": str(budget),
        "seed": str(seed),
        "options": hashlib.sha256(shown.encode()).hexdigest()[:16],
        "model": str(model),
    }


def changed_reason(saved: dict[str, str], now: dict[str, str]) -> str | None:
    """'the data and the metric changed since the interrupted compile; starting afresh', or None."""
    changed = [WHAT[key] for key in WHAT if saved.get(key) != now.get(key)]
    if not changed:
        return None
    named = changed[0] if len(changed) == 1 else f"{', '.join(changed[:-1])} and {changed[-1]}"
    return f"{named} changed since the interrupted compile; starting afresh"


def _folder_name(nodeid: str, name: str, model: object) -> str:
    # Readable for a person looking in the cache, unique by the hash (node ids hold '/', '[', ':').
    key = f"{nodeid}\0{name}\0{model}"
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{nodeid}-{name}").strip("_")[:80]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


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
        """Called each time gepa saves its state: the two files then describe the same iteration."""
        atomic_write(self.info_path, json.dumps({"version": INFO_VERSION, "fingerprint": self.fingerprints,
                                                 "extra": extra}, sort_keys=True) + "\n")

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


def open_state(root: Path | None, *, nodeid: str, name: str, fingerprints: dict[str, str], resume: bool,
               progress: Callable[[str], None], note_once: Callable[[str], bool]) -> RunState | None:
    """This target's state folder, saying what happens to a state found there; None without a cache."""
    label = f"  {name}:"
    if root is None:
        if note_once("no-cache"):
            advice = "--gepa-resume has nothing to resume from" if resume else "an interrupted compile will start over"
            progress(f"no compile state is kept (pytest's cache is disabled, -p no:cacheprovider): {advice}")
        return None
    folder = root / _folder_name(nodeid, name, fingerprints.get("model"))
    if not folder.exists():
        return RunState(folder, fingerprints, resuming=False, saved=None)
    info = _read_info(folder)
    has_state = (folder / RUN_DIR / STATE_FILE).is_file()
    resuming = False
    if info is None or not has_state:
        if has_state:
            progress(f"{label} the saved compile state has no readable '{INFO_FILE}'; starting afresh")
    elif (reason := changed_reason(dict(info.get("fingerprint") or {}), fingerprints)) is not None:
        progress(f"{label} {reason}")
    elif resume:
        resuming = True
    else:
        iteration, calls = _progress_of(info)
        progress(f"{label} an interrupted compile saved its state at iteration {iteration} ({calls} metric "
                 f"calls spent); `{resume_command(nodeid)}` would continue it. Starting afresh.")
    if not resuming:
        shutil.rmtree(folder, ignore_errors=True)
        info = None
    return RunState(folder, fingerprints, resuming=resuming, saved=info)


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
