"""Building the LMs of the three roles (task, reflection, judge) from litellm model strings.

Only dspy is imported here, and only when an LM is built; litellm loads on the first real call,
so a replayed run never imports it.
"""

from __future__ import annotations

import os
from typing import Any


def is_local_model(model: str) -> bool:
    """``local/<name>`` or a path to a ``.gguf`` file: the embedded model served on 127.0.0.1."""
    return model.startswith("local/") or model.lower().endswith(".gguf")


def build_lm(model: str, *, retries: int) -> Any:
    """A ``dspy.LM`` for a litellm model string, retrying transient failures with backoff."""
    # Without this litellm downloads its price map at import; offline that costs seconds.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if is_local_model(model):
        from pytest_gepa.local_model.lm import local_lm

        return local_lm(model, retries=retries)
    import dspy

    # engine="litellm": one HTTP client path for every provider string, with litellm's cost map.
    return dspy.LM(model, num_retries=retries, engine="litellm")
