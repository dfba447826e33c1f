"""A deterministic, offline LM world for pytest-gepa's tests (see DESIGN.md, "Testing").

``scripted_lm("task")`` is a real ``dspy.LM`` answering in process; ``ScriptedServer`` serves
the same :class:`World` as an OpenAI-compatible endpoint on 127.0.0.1 for the litellm path.
``World(noise=0.2, borderline=0.25, seed=7)`` answers like a model sampled at temperature > 0, and
``World(block=Block(after=N, marker=path))`` stops a run dead at a known point (see ``noise.py``).
``World(task="triage8")`` (or ``GEPA_TEST_WORLD=triage8``) plays the eight-rule task whose reflector
noise can mislead (see ``triage8.py``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# litellm fetches its model cost map from the internet at import unless told otherwise; the
# world must never leave 127.0.0.1, so ask for the bundled copy before anything imports it.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from .engine import (
    TASK_ENV,
    TASKS,
    AsyncScriptedEngine,
    OutputField,
    Prompt,
    ScriptedEngine,
    Skill,
    Truth,
    World,
    parse_prompt,
    render,
    scripted_lm,
)
from .judge import JudgeSkill
from .noise import Block, Blocked, Noise
from .triage import (
    CATEGORIES,
    CONVENTIONS,
    INSTRUCTION,
    Convention,
    Triage,
    TriageReflector,
    TriageStudent,
    triage_examples,
    triage_metric,
    triage_rows,
    write_triage_jsonl,
)
from .triage8 import (
    CONVENTIONS8,
    FALLBACK,
    Triage8Reflector,
    Triage8Student,
    classify8,
    rules_learned8,
    triage8_rows,
    triage8_splits,
    write_triage8_jsonl,
)

if TYPE_CHECKING:
    from .server import ChatRequest, HTTPReply, ScriptedServer, prime_litellm


def __getattr__(name: str) -> Any:
    # The server module loads lazily so that `python -m world.server` does not find it
    # already imported by this package (runpy warns about that).
    if name in ("ChatRequest", "HTTPReply", "ScriptedServer", "prime_litellm"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CATEGORIES",
    "CONVENTIONS",
    "CONVENTIONS8",
    "FALLBACK",
    "INSTRUCTION",
    "TASKS",
    "TASK_ENV",
    "AsyncScriptedEngine",
    "Block",
    "Blocked",
    "ChatRequest",
    "Convention",
    "HTTPReply",
    "JudgeSkill",
    "Noise",
    "OutputField",
    "Prompt",
    "ScriptedEngine",
    "ScriptedServer",
    "Skill",
    "Triage",
    "Triage8Reflector",
    "Triage8Student",
    "TriageReflector",
    "TriageStudent",
    "Truth",
    "World",
    "classify8",
    "parse_prompt",
    "prime_litellm",
    "render",
    "rules_learned8",
    "scripted_lm",
    "triage8_rows",
    "triage8_splits",
    "triage_examples",
    "triage_metric",
    "triage_rows",
    "write_triage8_jsonl",
    "write_triage_jsonl",
]
