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
from pathlib import Path
from typing import Any

from pytest_gepa._io import atomic_write
from pytest_gepa.artifact import provenance
from pytest_gepa.build.target import BuildContext, Target
from pytest_gepa.canonical import plain
from pytest_gepa.metrics import metric_fingerprint

RESUME_FOLDER = "gepa-resume"  # under pytest's cache directory: .pytest_cache/d/gepa-resume/
INFO_FILE = "resume.json"
RUN_DIR = "gepa"  # GEPA's own run_dir, where it keeps gepa_state.bin
STATE_FILE = "gepa_state.bin"
INFO_VERSION = 1

# What each fingerprint is about, in the order a reason names them.
WHAT = {"program": "the program", "data": "the data", "metric": "the metric", "budget": "the budget",
        "seed": "the seed", "options": "the optimizer options", "model": "the model"}


def fingerprint(ctx: BuildContext, target: Target, options: dict[str, Any]) -> dict[str, str]:
    """What the run is about: a state saved for anything else would continue the wrong run."""
    shown = json.dumps(plain({key: repr(value) for key, value in sorted(options.items())}), sort_keys=True)
    return {
        "program": provenance.program_fingerprint(target.seed_shape),
        "data": str(target.examples.fingerprint),
        "metric": metric_fingerprint(target.metric),
        "budget": str(ctx.settings.budget),
        "seed": str(ctx.settings.seed),
        "options": hashlib.sha256(shown.encode()).hexdigest()[:16],
        "model": str(target.lms.models.get("task")),
    }


def changed_reason(saved: dict[str, str], now: dict[str, str]) -> str | None:
    """'the data and the metric changed since the interrupted compile; starting afresh', or None."""
    changed = [WHAT[key] for key in WHAT if saved.get(key) != now.get(key)]
    if not changed:
        return None
    named = changed[0] if len(changed) == 1 else f"{', '.join(changed[:-1])} and {changed[-1]}"
    return f"{named} changed since the interrupted compile; starting afresh"


def _folder_name(ctx: BuildContext, target: Target) -> str:
    # Readable for a person looking in the cache, unique by the hash (node ids hold '/', '[', ':').
    key = f"{ctx.nodeid}\0{target.name}\0{target.lms.models.get('task')}"
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{ctx.nodeid}-{target.name}").strip("_")[:80]
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


def open_state(ctx: BuildContext, target: Target, options: dict[str, Any]) -> RunState | None:
    """This target's state folder, saying what happens to a state found there; None without a cache."""
    root = ctx.session.resume_root()
    label = f"  {target.name}:"
    if root is None:
        if ctx.session.note_once("no-cache"):
            advice = ("--gepa-resume has nothing to resume from" if ctx.settings.resume
                      else "an interrupted compile will start over")
            ctx.progress(f"no compile state is kept (pytest's cache is disabled, -p no:cacheprovider): {advice}")
        return None
    folder = root / _folder_name(ctx, target)
    now = fingerprint(ctx, target, options)
    if not folder.exists():
        return RunState(folder, now, resuming=False, saved=None)
    info = _read_info(folder)
    has_state = (folder / RUN_DIR / STATE_FILE).is_file()
    resuming = False
    if info is None or not has_state:
        if has_state:
            ctx.progress(f"{label} the saved compile state has no readable '{INFO_FILE}'; starting afresh")
    elif (reason := changed_reason(dict(info.get("fingerprint") or {}), now)) is not None:
        ctx.progress(f"{label} {reason}")
    elif ctx.settings.resume:
        resuming = True
    else:
        iteration, calls = _progress_of(info)
        ctx.progress(f"{label} an interrupted compile saved its state at iteration {iteration} ({calls} metric "
                     f"calls spent); `{resume_command(ctx)}` would continue it. Starting afresh.")
    if not resuming:
        shutil.rmtree(folder, ignore_errors=True)
        info = None
    return RunState(folder, now, resuming=resuming, saved=info)


def resumed_line(state: RunState) -> str | None:
    """The progress line of a run that continues: at which iteration, with how much already spent."""
    if not state.resuming:
        return None
    extra = state.load_extra() or {}
    iteration, calls = int(extra.get("iteration", 0) or 0), int(extra.get("metric_calls", 0) or 0)
    budget = extra.get("budget")
    of = f" of {budget}" if budget else ""
    return f"resumed at iteration {iteration} with {calls}{of} metric calls already spent"


def resume_command(ctx: BuildContext) -> str:
    return f"pytest --gepa-compile --gepa-resume {ctx.nodeid}"
