"""The LM meter: calls, tokens, failures and cost per role (task, reflection, judge).

Every role LM gets a ``RoleMeter`` callback, so LM calls, tokens and failures are counted per role
whatever the user's fixtures return. dspy copies an LM's callbacks list with the LM, so the role
survives the copies GEPA makes. Which role a running call belongs to is a ``ContextVar``: threads
and asyncio tasks each see their own call, so concurrent calls never mix their tokens.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from dspy.utils.callback import BaseCallback

from pytest_gepa.errors import describe_error, mark_lm_call_error, register_secret

ROLES = ("task", "reflection", "judge")
# The role of the LM call running in this thread or task (None outside a call).
_CURRENT_ROLE: contextvars.ContextVar[str | None] = contextvars.ContextVar("pytest_gepa_role", default=None)


@dataclass
class RoleCounter:
    calls: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_error: str | None = None  # the first failure counted here (in a ``since``: since then)

    def copy(self) -> RoleCounter:
        return RoleCounter(self.calls, self.failures, self.prompt_tokens, self.completion_tokens, self.first_error)


class RoleMeter(BaseCallback):  # type: ignore[misc,unused-ignore]  # dspy has no types
    """Counts one role's LM calls into a ``UsageMeter``; shared by every copy of the LM."""

    def __init__(self, meter: UsageMeter, role: str) -> None:
        self.meter = meter
        self.role = role
        self._tokens: dict[str, contextvars.Token[str | None]] = {}

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._tokens[call_id] = _CURRENT_ROLE.set(self.role)
        self.meter.started(self.role)

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        # Every exception leaving this role's call is marked there: only a marked one is an LM error.
        mark_lm_call_error(exception, self.role)
        token = self._tokens.pop(call_id, None)
        if token is not None:
            try:
                _CURRENT_ROLE.reset(token)
            except ValueError:  # ended in another context than it started: nothing to restore there
                _CURRENT_ROLE.set(None)
        self.meter.ended(self.role, exception)

    def __deepcopy__(self, memo: dict[int, Any]) -> RoleMeter:
        # Programs are deep-copied by dspy and GEPA; the meter must stay the one shared counter.
        return self


@dataclass
class UsageMeter:
    """LM calls, tokens and failures per role for the whole pytest process."""

    counters: dict[str, RoleCounter] = field(default_factory=lambda: {role: RoleCounter() for role in ROLES})
    models: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Every failure's sentence in order, so ``since`` can name the first one *after* a snapshot.
    _errors: dict[str, list[str]] = field(default_factory=lambda: {role: [] for role in ROLES})
    _role_copies: dict[tuple[int, str], Any] = field(default_factory=dict)

    def __deepcopy__(self, memo: dict[int, Any]) -> UsageMeter:
        # dspy deep-copies its context (usage tracker included) into worker threads; the copies
        # must keep counting into this one meter.
        return self

    def attach(self, lm: Any, role: str) -> Any:
        """This LM, counting its calls under ``role``. An LM already counted under another role
        (the task LM doubling as judge, say) is copied, so each role keeps its own numbers."""
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
        with self._lock:
            self.counters[role].calls += 1

    def ended(self, role: str, exception: BaseException | None) -> None:
        if exception is None:
            return
        with self._lock:
            counter = self.counters[role]
            counter.failures += 1
            self._errors[role].append(describe_error(exception))
            if counter.first_error is None:
                counter.first_error = self._errors[role][0]

    def add_usage(self, lm: Any, usage: dict[str, Any]) -> None:
        """dspy's usage-tracker hook: credit tokens to the role whose call is running in this context."""
        role = _CURRENT_ROLE.get()
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
        with self._lock:
            now = {role: counter.copy() for role, counter in self.counters.items()}
            errors = {role: list(self._errors[role]) for role in ROLES}
        used = {}
        for role in ROLES:
            a, b = before[role], now[role]
            used[role] = RoleCounter(
                calls=b.calls - a.calls,
                failures=b.failures - a.failures,
                prompt_tokens=b.prompt_tokens - a.prompt_tokens,
                completion_tokens=b.completion_tokens - a.completion_tokens,
                first_error=errors[role][a.failures] if b.failures > a.failures else None,
            )
        return used


def _register_credentials(lm: Any) -> None:
    """The LM's key and header values must never show in a message: tell ``redact`` about them."""
    kwargs = getattr(lm, "kwargs", {}) or {}
    register_secret(kwargs.get("api_key"))
    for name in ("extra_headers", "headers"):
        headers = kwargs.get(name)
        if isinstance(headers, dict):
            for value in headers.values():
                register_secret(value)


def cost_usd(model: str | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The price of these tokens where a price map knows the model; None elsewhere.

    dspy's bundled model metadata (litellm's price map, read without litellm) first, so pricing a
    call dspy's native engine served imports nothing; litellm's own lookup (which knows its provider
    aliases) only when litellm is already loaded, because dspy sent a call through it.
    """
    if not model:
        return None
    rates = _metadata_rates(model)
    if rates is not None:
        return prompt_tokens * rates[0] + completion_tokens * rates[1]
    litellm = sys.modules.get("litellm")
    if litellm is None:
        return None
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:
        return None
    return float(prompt_cost + completion_cost)


def _metadata_rates(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token from dspy's model metadata, or None when it has no price."""
    from dspy.clients.model_metadata import model_info, rate

    provider, _, name = model.partition("/")
    if not name:
        provider, name = "openai", model
    try:
        info = model_info(provider, name)
    except Exception:  # advisory: an unreadable map is an unknown price, never a failed run
        return None
    prompt, completion = rate(info, "input_cost_per_token"), rate(info, "output_cost_per_token")
    return None if prompt is None or completion is None else (prompt, completion)
