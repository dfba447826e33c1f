"""The embedded local model: a small GGUF model served on 127.0.0.1, so the whole loop runs offline.

``--gepa-task-lm local/smollm2`` (or a path to a ``.gguf`` file) gives a ``dspy.LM`` whose requests go
to llama-cpp-python's OpenAI-compatible server. ``packages`` knows the models and checks their files,
``server`` runs the llama.cpp process, ``lm`` is the ``LocalEngine`` behind a ``dspy.LM`` (the only
module importing dspy).

Importing this package stays light (no dspy): ``plugin.pytest_unconfigure`` finds it in
``sys.modules`` and calls :func:`stop_all`. ``local_lm`` and ``LocalEngine`` load on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_gepa.local_model.packages import KNOWN_MODELS, LocalModelError
from pytest_gepa.local_model.server import stop_all

if TYPE_CHECKING:
    from pytest_gepa.local_model.lm import LocalEngine, local_lm


def __getattr__(name: str) -> Any:
    # lm.py imports dspy: only when someone asks for the LM.
    if name in ("LocalEngine", "local_lm"):
        from pytest_gepa.local_model import lm

        return getattr(lm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["KNOWN_MODELS", "LocalEngine", "LocalModelError", "local_lm", "stop_all"]
