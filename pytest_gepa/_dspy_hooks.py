"""``CassetteLM``: a dspy LM answering from, or recording into, a cassette."""

from __future__ import annotations

import contextlib
from typing import Any

from dspy.clients.base_lm import BaseLM


class CassetteLM(BaseLM):
    """A role LM seen through a cassette: replay answers from it only, record passes through and keeps.

    It is a ``dspy.BaseLM`` so dspy accepts it anywhere an LM goes; what the model supports
    (structured outputs, tools) is the wrapped LM's answer, so adapters format prompts the same
    way whether a run records or replays.
    """

    def __init__(self, inner: Any, *, role: str, cassette: Any, replay: bool, target: str) -> None:
        super().__init__(model=inner.model, model_type=getattr(inner, "model_type", "chat"),
                         cache=False, num_retries=0)
        self.kwargs = dict(getattr(inner, "kwargs", {}) or {})
        self.inner = inner
        self.role = role
        self.cassette = cassette
        self.replay = replay
        self.target = target

    @property
    def supports_function_calling(self) -> bool:
        return bool(getattr(self.inner, "supports_function_calling", False))

    @property
    def supports_reasoning(self) -> bool:
        return bool(getattr(self.inner, "supports_reasoning", False))

    @property
    def supports_response_schema(self) -> bool:
        return bool(getattr(self.inner, "supports_response_schema", False))

    @property
    def supported_params(self) -> set[str]:
        return set(getattr(self.inner, "supported_params", set()) or set())

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        from pytest_gepa.cassette import miss_message, normalize_messages, request_key, request_of
        from pytest_gepa.errors import CassetteMissError

        normalized = normalize_messages(messages, prompt)
        request = request_of(str(self.inner.model), normalized, {**self.kwargs, **kwargs})
        key = request_key(request)
        recorded = self.cassette.lookup(key)
        if recorded is not None:
            return recorded
        if self.replay:
            miss = CassetteMissError(miss_message(self.target, self.role, str(self.inner.model), normalized,
                                                  self.cassette.path))
            # dspy and GEPA catch errors inside evaluations; the target re-raises the first miss after.
            self.cassette.misses.append(miss)
            raise miss
        with _as_adapter_call(self.inner, messages):
            if prompt is not None:
                outputs = self.inner(prompt, messages=messages, **kwargs)
            else:
                outputs = self.inner(messages=messages, **kwargs)
        self.cassette.add(key, self.role, request, _plain(outputs))
        return outputs

    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(self.__call__, prompt, messages=messages, **kwargs)

    def copy(self, **kwargs: Any) -> CassetteLM:
        inner_copy = self.inner.copy(**kwargs)
        return CassetteLM(inner_copy, role=self.role, cassette=self.cassette, replay=self.replay,
                          target=self.target)

    def __deepcopy__(self, memo: dict[int, Any]) -> CassetteLM:
        return self

    def dump_state(self) -> dict[str, Any]:
        return dict(self.inner.dump_state())


def _as_adapter_call(lm: Any, messages: Any) -> Any:
    """Pass the adapter's message call on as the adapter's own.

    dspy 3.4 warns when anything but an adapter calls an LM with ``messages=``; the cassette sits
    between the adapter and the LM and forwards the adapter's call unchanged, so it says so with
    dspy's own (private) marker. Without that marker nothing breaks; the warning just shows.
    """
    try:
        from dspy.clients._deprecation import adapter_message_call
    except ImportError:  # a dspy without the 3.4 deprecation layer
        return contextlib.nullcontext()
    return adapter_message_call(lm, messages)


def _plain(outputs: Any) -> list[Any]:
    """LM outputs as JSON: strings stay strings, dict outputs keep only their JSON-able values."""
    import json

    return json.loads(json.dumps(list(outputs), default=str))
