"""A deterministic, offline LM world for pytest-gepa's tests (see DESIGN.md, "Testing").

``scripted_lm("task")`` is a real ``dspy.LM`` answering in process; ``ScriptedServer`` serves
the same :class:`World` as an OpenAI-compatible endpoint on 127.0.0.1 for the litellm path.
``World(noise=0.2, borderline=0.25, seed=7)`` answers like a model sampled at temperature > 0, and
``World(block=Block(after=N, marker=path))`` stops a run dead at a known point (see ``noise.py``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# litellm fetches its model cost map from the internet at import unless told otherwise; the
# world must never leave 127.0.0.1, so ask for the bundled copy before anything imports it.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from .engine import (
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
    "INSTRUCTION",
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
    "TriageReflector",
    "TriageStudent",
    "Truth",
    "World",
    "parse_prompt",
    "prime_litellm",
    "render",
    "scripted_lm",
    "triage_examples",
    "triage_metric",
    "triage_rows",
    "write_triage_jsonl",
]
