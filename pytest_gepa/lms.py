"""The LMs of the three roles (task, reflection, judge): built from model strings, and metered.

Every role LM gets a ``RoleMeter`` callback, so LM calls, tokens and failures are counted per role
whatever the user's fixtures return. dspy copies an LM's callbacks list with the LM, so the role
survives the copies GEPA makes.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

ROLES = ("task", "reflection", "judge")


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


@dataclass
class RoleCounter:
    calls: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_error: str | None = None

    def copy(self) -> RoleCounter:
        return RoleCounter(self.calls, self.failures, self.prompt_tokens, self.completion_tokens, self.first_error)


@dataclass
class UsageMeter:
    """LM calls, tokens and failures per role for the whole pytest process."""

    counters: dict[str, RoleCounter] = field(default_factory=lambda: {role: RoleCounter() for role in ROLES})
    models: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _current: threading.local = field(default_factory=threading.local)
    _role_copies: dict[tuple[int, str], Any] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict[int, Any]) -> UsageMeter:
        # dspy deep-copies its context (usage tracker included) into worker threads; the copies
        # must keep counting into this one meter.
        return self

    def attach(self, lm: Any, role: str) -> Any:
        """This LM, counting its calls under ``role``. An LM already counted under another role
        (the task LM doubling as judge, say) is copied, so each role keeps its own numbers."""
        from pytest_gepa._dspy_hooks import RoleMeter

        callbacks = getattr(lm, "callbacks", None)
        if callbacks is None:
            return lm
        mine = [cb for cb in callbacks if isinstance(cb, RoleMeter) and cb.meter is self]
        if mine and mine[0].role != role:
            key = (id(lm), role)
            if key not in self._role_copies:
                copy = lm.copy()
                copy.callbacks = [cb for cb in copy.callbacks if cb not in mine] + [RoleMeter(self, role)]
                self._role_copies[key] = copy
            lm = self._role_copies[key]
        elif not mine:
            callbacks.append(RoleMeter(self, role))
        self.models[role] = str(getattr(lm, "model", ""))
        _register_credentials(lm)
        return lm

    def started(self, role: str) -> None:
        self._current.role = role
        with self._lock:
            self.counters[role].calls += 1

    def ended(self, role: str, exception: BaseException | None) -> None:
        self._current.role = None
        if exception is None:
            return
        from pytest_gepa.errors import describe_error

        with self._lock:
            counter = self.counters[role]
            counter.failures += 1
            if counter.first_error is None:
                counter.first_error = describe_error(exception)

    def add_usage(self, lm: Any, usage: dict[str, Any]) -> None:
        """dspy's usage-tracker hook: credit tokens to the role whose call is running in this thread."""
        role = getattr(self._current, "role", None)
        if role is None:
            return
        with self._lock:
            counter = self.counters[role]
            counter.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            counter.completion_tokens += int(usage.get("completion_tokens") or 0)

    def snapshot(self) -> dict[str, RoleCounter]:
        with self._lock:
            return {role: counter.copy() for role, counter in self.counters.items()}

    def since(self, before: dict[str, RoleCounter]) -> dict[str, RoleCounter]:
        """What each role used since ``before``; the first error is the first one after it."""
        now = self.snapshot()
        used = {}
        for role in ROLES:
            a, b = before[role], now[role]
            used[role] = RoleCounter(
                calls=b.calls - a.calls,
                failures=b.failures - a.failures,
                prompt_tokens=b.prompt_tokens - a.prompt_tokens,
                completion_tokens=b.completion_tokens - a.completion_tokens,
                first_error=b.first_error if b.failures > a.failures else None,
            )
        return used


def _register_credentials(lm: Any) -> None:
    """The LM's key and header values must never show in a message: tell ``redact`` about them."""
    from pytest_gepa.errors import register_secret

    kwargs = getattr(lm, "kwargs", {}) or {}
    register_secret(kwargs.get("api_key"))
    for name in ("extra_headers", "headers"):
        headers = kwargs.get(name)
        if isinstance(headers, dict):
            for value in headers.values():
                register_secret(value)


def cost_usd(model: str | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The price of these tokens where litellm's (local) cost map knows the model; None elsewhere."""
    # Only LMs that went through litellm have a litellm price; importing it just to ask costs seconds.
    litellm = sys.modules.get("litellm")
    if not model or litellm is None:
        return None
    try:

        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:
        return None
    return float(prompt_cost + completion_cost)
