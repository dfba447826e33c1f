"""A deterministic, offline LM world for pytest-gepa's tests (see DESIGN.md, "Testing").

``scripted_lm("task")`` is a real ``dspy.LM`` answering in process; ``ScriptedServer`` serves
the same :class:`World` as an OpenAI-compatible endpoint on 127.0.0.1 for the litellm path.
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
    World,
    parse_prompt,
    render,
    scripted_lm,
)
from .judge import JudgeSkill
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
    "ChatRequest",
    "Convention",
    "HTTPReply",
    "JudgeSkill",
    "OutputField",
    "Prompt",
    "ScriptedEngine",
    "ScriptedServer",
    "Skill",
    "Triage",
    "TriageReflector",
    "TriageStudent",
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
