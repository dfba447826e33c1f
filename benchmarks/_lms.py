"""The LMs of the plain-dspy baselines, named the two ways a user names them.

``own``: ``dspy.LM("openai/<role>", api_base=..., api_key=...)``, a user's own LM (what the plugin's
projects put in ``conftest.py``). ``strings``: a model string, ``bench/<role>``, for a provider
declared to dspy at the server (``dspy.lm15.register_provider``, dspy's public way to name an
OpenAI-compatible endpoint); the plugin's project names the same strings with ``gepa_task_lm``.
Either way the engine is dspy's default choice unless ``engine="litellm"`` forces the old one.
"""

from __future__ import annotations

import os
from typing import Any

PROVIDER = "bench"
KEY_VARIABLE = "BENCH_API_KEY"


def register_bench_provider(base_url: str) -> None:
    """``bench/<model>`` reaches ``base_url`` through dspy's native engine, its key from BENCH_API_KEY."""
    from dspy.lm15 import AccessPolicy, OpenAIChatCompat, ProviderDefinition, register_provider

    os.environ.setdefault(KEY_VARIABLE, "sk-bench")
    register_provider(ProviderDefinition.chat(
        AccessPolicy(provider=PROVIDER, env_keys=(KEY_VARIABLE,), base_url=base_url), compat=OpenAIChatCompat()),
        replace=True)


def bench_lm(role: str, base_url: str, *, models: str = "own", engine: str = "auto") -> Any:
    import dspy

    if models == "strings":
        register_bench_provider(base_url)
        return dspy.LM(f"{PROVIDER}/{role}", engine=engine)
    return dspy.LM(f"openai/{role}", api_base=base_url, api_key="sk-bench", engine=engine, cache=False,
                   num_retries=0)
