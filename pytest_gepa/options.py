"""Every pytest-gepa flag and ini key, registered in one ``gepa`` group.

Each flag has an ini key of the same name (``--gepa-budget`` / ``gepa_budget``) so a team can commit
its choice in ``pytest.ini`` / ``pyproject.toml``; the flag wins over the ini key.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Option:
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
    Option("gepa_artifact_dir", "directory for artifacts (default: gepa_artifacts/ beside each test file)"),
    Option("gepa_report", "write a report of every target to PATH (.json, .md or .html)"),
    Option("gepa_task_lm", "model string (litellm) of the program's task LM, e.g. openai/gpt-4o-mini"),
    Option("gepa_reflection_lm", "model string of GEPA's reflection LM (default: the task LM)"),
    Option("gepa_judge_lm", "model string of the rubric judge LM (default: the task LM)"),
    Option("gepa_threads", "parallel LM calls during evaluation", "4"),
    Option("gepa_retries", "retries of a failed LM call, with exponential backoff", "3"),
    Option("gepa_optimizer", "optimizer: gepa, miprov2 or bootstrap", "gepa"),
    Option("gepa_compare", "also run this optimizer (gepa, miprov2 or bootstrap) and show both side by side"),
    Option("gepa_keep_best", "with --gepa-compare, keep the better of the two as the artifact", is_switch=True),
    Option("gepa_max_cost", "stop a compile once its LM cost exceeds this many USD"),
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
            parser.addini(option.ini, option.help, type="bool", default=False)
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
