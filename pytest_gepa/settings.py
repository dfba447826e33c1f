"""The run's settings, resolved once from flags and ini keys into a frozen object.

Every value is checked here, at configure time, so a bad value is a ``pytest.UsageError`` (exit
code 4) naming the option, the value and the fix, before any test runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from pytest_gepa.options import OPTIONS, Option, raw_value

BUDGET_WORDS = ("light", "medium", "heavy")
OPTIMIZERS = ("gepa", "miprov2", "bootstrap")
Mode = Literal["gate", "compile"]


@dataclass(frozen=True)
class Settings:
    """What this pytest run was asked to do with its gepa targets."""

    mode: Mode = "gate"
    record: bool = False
    replay: bool = False
    budget: str | int = "light"
    artifact_dir: Path | None = None
    report: Path | None = None
    task_lm: str | None = None
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

    @property
    def compile(self) -> bool:
        return self.mode == "compile"


SETTINGS_KEY = pytest.StashKey[Settings]()


def _option(name: str) -> Option:
    return next(option for option in OPTIONS if option.ini == name)


def _text(config: pytest.Config, name: str) -> str | None:
    value = raw_value(config, _option(name))
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _switch(config: pytest.Config, name: str) -> bool:
    value = raw_value(config, _option(name))
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


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
    artifact_dir = _text(config, "gepa_artifact_dir")
    report = _text(config, "gepa_report")
    if report is not None and Path(report).suffix.lower() not in (".json", ".md", ".html"):
        raise _usage("gepa_report", report, "a path ending in .json, .md or .html")
    threads = _number(config, "gepa_threads", low=1, integer=True, expected="a whole number of at least 1")
    retries = _number(config, "gepa_retries", low=0, integer=True, expected="a whole number of at least 0")
    seed = _number(config, "gepa_seed", integer=True, expected="a whole number")
    return Settings(
        mode="compile" if _switch(config, "gepa_compile") else "gate",
        record=record,
        replay=replay,
        budget=_budget(config),
        artifact_dir=Path(config.rootpath, artifact_dir) if artifact_dir else None,
        report=Path(config.invocation_params.dir, report) if report else None,
        task_lm=_text(config, "gepa_task_lm"),
        reflection_lm=_text(config, "gepa_reflection_lm"),
        judge_lm=_text(config, "gepa_judge_lm"),
        threads=int(threads) if threads is not None else 4,
        retries=int(retries) if retries is not None else 3,
        optimizer=optimizer,
        compare=compare.lower() if compare else None,
        keep_best=_switch(config, "gepa_keep_best"),
        max_cost=_number(config, "gepa_max_cost", low=0, expected="a cost in USD, at least 0"),
        min_score=_number(config, "gepa_min_score", low=0, high=1, expected="a score between 0 and 1"),
        max_drop=_number(config, "gepa_max_drop", low=0, high=1, expected="a score drop between 0 and 1"),
        seed=int(seed) if seed is not None else 0,
        stop_at=_stop_at(config),
        patience=_optional_int(_number(config, "gepa_patience", low=1, integer=True,
                                       expected="a whole number of iterations, at least 1")),
    )
