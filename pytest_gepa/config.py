"""Every pytest-gepa flag and ini key, and the run's settings resolved once from them.

Each flag has an ini key of the same name (``--gepa-budget`` / ``gepa_budget``) so a team can commit
its choice in ``pytest.ini`` / ``pyproject.toml``; the flag wins over the ini key. Every value is
checked at configure time, so a bad value is a ``pytest.UsageError`` (exit code 4) naming the
option, the value and the fix, before any test runs.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Literal, NamedTuple

import pytest


# NamedTuples, not dataclasses: this module loads in every pytest run, and a dataclass builds its
# methods from generated source at each import (several ms on a busy machine, per class).
class Option(NamedTuple):
    """One setting: its flag (if any), ini key, help text and default."""

    ini: str
    help: str
    default: str | None = None
    flag: bool = True
    is_switch: bool = False

    @property
    def dest(self) -> str:
        return self.ini

    @property
    def flag_name(self) -> str:
        return "--" + self.ini.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("gepa_compile", "run the optimizer and write each target's artifact (default: gate the stored one)",
           is_switch=True),
    Option("gepa_budget", "optimizer budget: light, medium, heavy, or a number of metric calls", "light"),
    Option("gepa_record", "record every LM call into a cassette beside the target's artifact", is_switch=True),
    Option("gepa_replay", "answer LM calls only from cassettes; a call with no recording fails the test",
           is_switch=True),
    Option("gepa_resume", "continue each interrupted compile from the state saved under pytest's cache directory",
           is_switch=True),
    Option("gepa_artifact_dir", "directory for artifacts (default: gepa_artifacts/ beside each test file)"),
    Option("gepa_report", "write a report of every target to PATH (.json, .md or .html)"),
    Option("gepa_task_lm", "model string (litellm) of the program's task LM, e.g. openai/gpt-4o-mini; several "
           "(a comma list, or one per line in the ini) make each target a test per model"),
    Option("gepa_reflection_lm", "model string of GEPA's reflection LM (default: the task LM)"),
    Option("gepa_judge_lm", "model string of the rubric judge LM (default: the task LM)"),
    Option("gepa_transfer", "gate a model that has no artifact yet with the artifact compiled for this model"),
    Option("gepa_threads", "parallel LM calls during evaluation", "4"),
    Option("gepa_retries", "retries of a failed LM call, with exponential backoff", "3"),
    Option("gepa_optimizer", "optimizer: gepa, miprov2 or bootstrap", "gepa"),
    Option("gepa_compare", "also run this optimizer (gepa, miprov2 or bootstrap) and show both side by side"),
    Option("gepa_keep_best", "with --gepa-compare, keep the better of the two as the artifact", is_switch=True),
    Option("gepa_max_cost", "stop a compile once its LM cost exceeds this many USD"),
    Option("gepa_samples", "score each devset example this many times (dspy's cache bypassed); its score is the mean",
           "1"),
    Option("gepa_compile_samples", "draws per devset example a compile records for later gates (at least "
           "gepa_samples)", "3", flag=False),
    Option("gepa_max_samples", "most draws per devset example, on average, a gate spends deciding an inconclusive "
           "verdict (default: 3 x gepa_samples)", flag=False),
    Option("gepa_strict", "an inconclusive verdict fails the test instead of warning", is_switch=True),
    Option("gepa_confidence", "confidence of the gate's intervals and tests, in (0.5, 1)", "0.95", flag=False),
    Option("gepa_min_score", "default min_score of gepa.gate, in [0, 1]", flag=False),
    Option("gepa_max_drop", "default max_drop of gepa.gate: allowed drop under the recorded score", "0.05",
           flag=False),
    Option("gepa_seed", "random seed of the optimizer", "0", flag=False),
    Option("gepa_stop_at", "stop a compile early once the validation score reaches this value (off: never)",
           "1.0", flag=False),
    Option("gepa_patience", "stop a compile early after this many iterations without improvement", flag=False),
)


def add_options(parser: pytest.Parser) -> None:
    """Register the ``gepa`` group of flags and their ini keys."""
    group = parser.getgroup("gepa", "prompt optimization as a tested build step (pytest-gepa)")
    for option in OPTIONS:
        if option.is_switch:
            # Read as text and parsed here, so `-o gepa_compile=maybe` names the option instead of
            # failing inside pytest.
            parser.addini(option.ini, option.help, default="false")
        else:
            parser.addini(option.ini, option.help, default=option.default)
        if not option.flag:
            continue
        if option.is_switch:
            group.addoption(option.flag_name, action="store_true", dest=option.dest, default=None,
                            help=option.help)
        else:
            metavar = option.ini.removeprefix("gepa_").upper()
            group.addoption(option.flag_name, dest=option.dest, default=None, metavar=metavar,
                            help=option.help)


def raw_value(config: pytest.Config, option: Option) -> object:
    """The flag's value if given on the command line, else the ini key's (or its default)."""
    if option.flag:
        value = config.getoption(option.dest, default=None)
        if value is not None:
            return value
    return config.getini(option.ini)


BUDGET_WORDS = ("light", "medium", "heavy")
OPTIMIZERS = ("gepa", "miprov2", "bootstrap")
Mode = Literal["gate", "compile"]


class Settings(NamedTuple):
    """What this pytest run was asked to do with its gepa targets."""

    mode: Mode = "gate"
    record: bool = False
    replay: bool = False
    resume: bool = False
    budget: str | int = "light"
    artifact_dir: Path | None = None
    report: Path | None = None
    task_lm: str | None = None  # the first (or only) task model
    task_lms: tuple[str, ...] = ()  # every task model; more than one makes a model matrix
    transfer: str | None = None
    reflection_lm: str | None = None
    judge_lm: str | None = None
    threads: int = 4
    retries: int = 3
    optimizer: str = "gepa"
    compare: str | None = None
    keep_best: bool = False
    max_cost: float | None = None
    min_score: float | None = None
    max_drop: float | None = 0.05
    seed: int = 0
    stop_at: float | None = 1.0
    patience: int | None = None
    samples: int = 1
    strict: bool = False
    confidence: float = 0.95
    compile_samples: int = 3  # draws per example a compile records (never fewer than `samples`)
    max_samples: int = 3  # a gate's budget of draws per example, on average, to decide an inconclusive verdict

    @property
    def compile(self) -> bool:
        return self.mode == "compile"

    @property
    def cassettes(self) -> bool:
        """LM calls go through cassettes (recorded or replayed)."""
        return self.record or self.replay


SETTINGS_KEY = pytest.StashKey[Settings]()


def _option(name: str) -> Option:
    return next(option for option in OPTIONS if option.ini == name)


def _text(config: pytest.Config, name: str) -> str | None:
    value = raw_value(config, _option(name))
    if value is None:
        return None
    text = str(value).strip()
    return text or None


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


def _switch(config: pytest.Config, name: str) -> bool:
    value = raw_value(config, _option(name))
    if not isinstance(value, str):
        return bool(value)
    word = value.strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise _usage(name, value, "true or false")
    return word in TRUE_WORDS


def _usage(name: str, value: str, expected: str) -> pytest.UsageError:
    option = _option(name)
    where = f"{option.flag_name} / ini {name}" if option.flag else f"ini {name}"
    return pytest.UsageError(f"{where}: {value!r} is not valid; expected {expected}.")


def _number(config: pytest.Config, name: str, *, low: float | None = None, high: float | None = None,
            integer: bool = False, expected: str) -> float | None:
    text = _text(config, name)
    if text is None:
        return None
    try:
        number = float(int(text)) if integer else float(text)
    except ValueError:
        raise _usage(name, text, expected) from None
    if not math.isfinite(number) or (low is not None and number < low) or (high is not None and number > high):
        raise _usage(name, text, expected)
    return number


def _budget(config: pytest.Config) -> str | int:
    text = _text(config, "gepa_budget") or "light"
    if text.lower() in BUDGET_WORDS:
        return text.lower()
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise _usage("gepa_budget", text, "light, medium, heavy, or a positive number of metric calls")


def _stop_at(config: pytest.Config) -> float | None:
    text = _text(config, "gepa_stop_at")
    if text is not None and text.lower() in ("off", "none", "never"):
        return None
    return _number(config, "gepa_stop_at", low=0, high=1, expected="a score between 0 and 1, or off")


def _optional_int(value: float | None) -> int | None:
    return None if value is None else int(value)


def resolve_settings(config: pytest.Config) -> Settings:
    """Read and check every gepa option; raise ``pytest.UsageError`` on the first bad one."""
    record, replay = _switch(config, "gepa_record"), _switch(config, "gepa_replay")
    if record and replay:
        raise pytest.UsageError(
            "--gepa-record and --gepa-replay cannot be used together: record makes real LM calls and "
            "writes cassettes, replay answers only from them. Choose one."
        )
    optimizer = (_text(config, "gepa_optimizer") or "gepa").lower()
    if optimizer not in OPTIMIZERS:
        raise _usage("gepa_optimizer", optimizer, "one of " + ", ".join(OPTIMIZERS))
    compare = _text(config, "gepa_compare")
    if compare is not None and compare.lower() not in OPTIMIZERS:
        raise _usage("gepa_compare", compare, "one of " + ", ".join(OPTIMIZERS))
    keep_best = _switch(config, "gepa_keep_best")
    if keep_best and compare is None:
        raise pytest.UsageError("--gepa-keep-best keeps the better of two optimizers' programs and needs "
                                "--gepa-compare OPTIMIZER to name the second one (gepa, miprov2 or bootstrap).")
    # A committed ini key may stay on for every run; the flag typed without a compile is a slip.
    if config.getoption("gepa_resume", default=None) and not _switch(config, "gepa_compile"):
        raise pytest.UsageError("--gepa-resume continues an interrupted compile: run it with --gepa-compile "
                                "(`pytest --gepa-compile --gepa-resume ...`).")
    resume = _switch(config, "gepa_resume")
    if resume and _switch(config, "gepa_compile") and not config.pluginmanager.hasplugin("cacheprovider"):
        # The state is kept only in pytest's cache: without it every call would be paid again, unsaid.
        where = "--gepa-resume" if config.getoption("gepa_resume", default=None) else "the ini key gepa_resume"
        raise pytest.UsageError(
            f"{where} continues an interrupted compile from the state kept in pytest's cache directory, but pytest's "
            "cache provider is disabled (-p no:cacheprovider, on the command line or in addopts), so there is no "
            "state to resume and none would be kept. Enable the cache provider (drop -p no:cacheprovider), or run "
            "without --gepa-resume to compile afresh.")
    artifact_dir = _text(config, "gepa_artifact_dir")
    report = _report_path(config)
    confidence = _number(config, "gepa_confidence", low=0.5, high=0.999, expected="a confidence between 0.5 and 0.999")
    samples = _number(config, "gepa_samples", low=1, high=100, integer=True, expected="a whole number from 1 to 100")
    compile_samples = _number(config, "gepa_compile_samples", low=1, high=100, integer=True,
                              expected="a whole number from 1 to 100")
    max_samples = _number(config, "gepa_max_samples", low=1, high=1000, integer=True,
                          expected="a whole number from 1 to 1000")
    threads = _number(config, "gepa_threads", low=1, integer=True, expected="a whole number of at least 1")
    retries = _number(config, "gepa_retries", low=0, integer=True, expected="a whole number of at least 0")
    seed = _number(config, "gepa_seed", integer=True, expected="a whole number")
    task_lms = _models(config)
    gate_samples = int(samples) if samples is not None else 1
    return Settings(
        mode="compile" if _switch(config, "gepa_compile") else "gate",
        record=record,
        replay=replay,
        resume=resume,
        budget=_budget(config),
        artifact_dir=Path(config.rootpath, artifact_dir) if artifact_dir else None,
        report=report,
        task_lm=task_lms[0] if task_lms else None,
        task_lms=task_lms,
        transfer=_text(config, "gepa_transfer"),
        reflection_lm=_text(config, "gepa_reflection_lm"),
        judge_lm=_text(config, "gepa_judge_lm"),
        threads=int(threads) if threads is not None else 4,
        retries=int(retries) if retries is not None else 3,
        optimizer=optimizer,
        compare=compare.lower() if compare else None,
        keep_best=keep_best,
        max_cost=_number(config, "gepa_max_cost", low=0, expected="a cost in USD, at least 0"),
        min_score=_number(config, "gepa_min_score", low=0, high=1, expected="a score between 0 and 1"),
        max_drop=_number(config, "gepa_max_drop", low=0, high=1, expected="a score drop between 0 and 1"),
        seed=int(seed) if seed is not None else 0,
        stop_at=_stop_at(config),
        patience=_optional_int(_number(config, "gepa_patience", low=1, integer=True,
                                       expected="a whole number of iterations, at least 1")),
        samples=gate_samples,
        strict=_switch(config, "gepa_strict"),
        confidence=confidence if confidence is not None else 0.95,
        # Never fewer recorded draws than a gate makes; the budget is at least what the gate draws anyway.
        compile_samples=max(int(compile_samples) if compile_samples is not None else 3, gate_samples),
        max_samples=max(int(max_samples) if max_samples is not None else 3 * gate_samples, gate_samples),
    )


def _models(config: pytest.Config) -> tuple[str, ...]:
    """``--gepa-task-lm a,b`` or the ini key with one model per line (commas work there too)."""
    text = _text(config, "gepa_task_lm")
    if text is None:
        return ()
    models = tuple(model.strip() for model in re.split(r"[,\n]", text) if model.strip())
    repeated = sorted({model for model in models if models.count(model) > 1})
    if repeated:
        raise _usage("gepa_task_lm", text, f"each model once ({', '.join(map(repr, repeated))} is repeated)")
    return models


def _report_path(config: pytest.Config) -> Path | None:
    """``--gepa-report``: a file we can write, checked now so the run does not end without its report."""
    text = _text(config, "gepa_report")
    if text is None:
        return None
    path = Path(config.invocation_params.dir, text)
    if path.suffix.lower() not in (".json", ".md", ".html"):
        raise _usage("gepa_report", text, "a path ending in .json, .md or .html")
    if path.is_dir():
        raise _usage("gepa_report", text, "a file path; it names a directory")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the report's folders are made when it is written
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK) or (path.exists()
                                                                         and not os.access(path, os.W_OK)):
        raise _usage("gepa_report", text, f"a path this user can write ({str(folder)!r} is not writable)")
    return path
