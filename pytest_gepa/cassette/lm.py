"""``CassetteLM``: a role LM seen through a cassette. Replay answers from it only; record passes
through (past dspy's response cache, so the cassette holds the endpoint's real answers) and keeps.

Under replay nothing reaches the wrapped LM: not a call, and not the capability questions dspy's
adapters ask (``supports_response_schema`` and the like, which ``dspy.LM`` answers by importing
litellm). Those are answered from what the cassette recorded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from dspy.clients.base_lm import BaseLM

from pytest_gepa.cassette.store import (
    Capabilities,
    Cassette,
    miss_message,
    no_cassette_message,
    request_key,
    request_of,
)
from pytest_gepa.errors import CassetteMissError

# The cassette itself, or a zero-argument callable returning the current test's (None: none open),
# for a wrapper that lives for the session while cassettes come and go with the tests.
CassetteSource = Cassette | Callable[[], Cassette | None]


class CassetteLM(BaseLM):  # type: ignore[misc,unused-ignore]  # dspy has no types
    """A role LM seen through a cassette; a ``dspy.BaseLM`` so dspy accepts it anywhere an LM goes."""

    def __init__(self, inner: Any, *, role: str, cassette: CassetteSource, replay: bool, target: str = "") -> None:
        super().__init__(model=inner.model, model_type=getattr(inner, "model_type", "chat"),
                         cache=False, num_retries=0)
        # The same dict as the inner LM's: what adapters read here is what the inner LM sends.
        self.kwargs = inner.kwargs if isinstance(getattr(inner, "kwargs", None), dict) else {}
        self.inner = inner
        self.role = role
        self.cassette = cassette
        self.replay = replay
        self.target = target

    def current_cassette(self) -> Cassette | None:
        return self.cassette if isinstance(self.cassette, Cassette) else self.cassette()

    def _target_name(self, cassette: Cassette | None) -> str:
        return self.target or (cassette.target if cassette is not None else "") or "this test"

    # -- what the model supports: recorded, so a replay asks nobody -------------------------------

    def capabilities(self) -> Capabilities:
        """Replay: what the cassette recorded for this role and model (all-unsupported if nothing,
        which at worst formats a different prompt, so a miss). Record: the inner LM's answer."""
        model = str(self.inner.model)
        if self.replay:
            cassette = self.current_cassette()
            recorded = cassette.capabilities_of(self.role, model) if cassette is not None else None
            return recorded if recorded is not None else Capabilities()
        return _live_capabilities(self.inner)

    def _supports(self, name: str, recorded: Callable[[Capabilities], bool]) -> bool:
        # Recording asks the inner LM only the question asked, as the adapter would have.
        return recorded(self.capabilities()) if self.replay else bool(getattr(self.inner, name, False))

    @property
    def supports_function_calling(self) -> bool:
        return self._supports("supports_function_calling", lambda c: c.function_calling)

    @property
    def supports_reasoning(self) -> bool:
        return self._supports("supports_reasoning", lambda c: c.reasoning)

    @property
    def supports_response_schema(self) -> bool:
        return self._supports("supports_response_schema", lambda c: c.response_schema)

    @property
    def supported_params(self) -> set[str]:
        if self.replay:
            return set(self.capabilities().params)
        return {str(p) for p in (getattr(self.inner, "supported_params", None) or ())}

    # -- calls ------------------------------------------------------------------------------------

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        model = str(self.inner.model)
        request = request_of(model, messages, prompt, {**self.kwargs, **kwargs},
                             model_type=str(getattr(self.inner, "model_type", "chat")))
        key = request_key(request)
        cassette = self.current_cassette()
        recorded = cassette.lookup(key) if cassette is not None else None
        if recorded is not None:
            return recorded
        if self.replay:
            raise self._miss(cassette, model, request)
        outputs = self._call_inner(prompt, messages, kwargs)
        if cassette is not None:
            if not cassette.has_capabilities(self.role, model):
                cassette.note_capabilities(self.role, model, _live_capabilities(self.inner))
            cassette.add(key, self.role, request, list(outputs))
        return outputs

    def _miss(self, cassette: Cassette | None, model: str, request: dict[str, Any]) -> CassetteMissError:
        target = self._target_name(cassette)
        if cassette is None:
            return CassetteMissError(no_cassette_message(target, self.role, model, request))
        miss = CassetteMissError(miss_message(target, self.role, model, request, cassette.path))
        # dspy and GEPA catch errors inside evaluations; the target re-raises the first miss after.
        cassette.misses.append(miss)
        return miss

    def _call_inner(self, prompt: Any, messages: Any, kwargs: dict[str, Any]) -> Any:
        import dspy

        if isinstance(self.inner, dspy.LM):
            # dspy's response cache ignores api_base in its key, so it could hand back another
            # endpoint's answer; a recording must hold this endpoint's. A call-time ``cache=False``
            # is dspy.LM's own switch for one call.
            kwargs = {**kwargs, "cache": False}
        with _as_adapter_call(self.inner, messages):
            if prompt is not None:
                return self.inner(prompt, messages=messages, **kwargs)
            return self.inner(messages=messages, **kwargs)

    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(self.__call__, prompt, messages=messages, **kwargs)

    def copy(self, **kwargs: Any) -> CassetteLM:
        return CassetteLM(self.inner.copy(**kwargs), role=self.role, cassette=self.cassette, replay=self.replay,
                          target=self.target)

    def __deepcopy__(self, memo: dict[int, Any]) -> CassetteLM:
        return self

    def dump_state(self) -> dict[str, Any]:
        return dict(self.inner.dump_state())


def wrap(lm: Any, *, role: str, cassette: CassetteSource, replay: bool, target: str = "") -> CassetteLM:
    """``lm`` behind a cassette. An LM already behind one is re-wrapped from its inner LM, so a call
    is recorded once, into the cassette given here."""
    inner = lm.inner if isinstance(lm, CassetteLM) else lm
    return CassetteLM(inner, role=role, cassette=cassette, replay=replay, target=target)


def _live_capabilities(lm: Any) -> Capabilities:
    """What ``lm`` says it supports (a ``dspy.LM`` asks litellm: only ever while recording)."""
    return Capabilities(
        function_calling=bool(getattr(lm, "supports_function_calling", False)),
        reasoning=bool(getattr(lm, "supports_reasoning", False)),
        response_schema=bool(getattr(lm, "supports_response_schema", False)),
        params=frozenset(str(p) for p in (getattr(lm, "supported_params", None) or ())),
    )


def _as_adapter_call(lm: Any, messages: Any) -> Any:
    """Pass the adapter's message call on as the adapter's own.

    dspy 3.4 warns when anything but an adapter calls an LM with ``messages=``; the cassette sits
    between the adapter and the LM and forwards the adapter's call unchanged, so it says so with
    dspy's own (private) marker: dspy has no public one. Without it nothing breaks; the warning shows.
    """
    try:
        from dspy.clients._deprecation import adapter_message_call
    except ImportError:  # a dspy without the 3.4 deprecation layer
        return contextlib.nullcontext()
    return adapter_message_call(lm, messages)


__all__ = ["CassetteLM", "CassetteSource", "wrap"]
