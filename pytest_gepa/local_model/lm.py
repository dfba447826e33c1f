"""The ``dspy.LM`` on the embedded model: ``local_lm("local/smollm2")`` or a path to a ``.gguf`` file.

A plain ``dspy.LM`` whose engine (dspy's ``complete(Request) -> Response`` contract) is a
:class:`LocalEngine`. The engine starts llama-cpp-python's OpenAI-compatible server on its first
call, not when the LM is built: the role fixtures build every LM at session start whatever the mode,
and a replayed gate answers every call from its cassette, so a replay on a machine without the
``local`` extra never needs the model. Everything that can fail at that first call fails as a
``LocalModelError`` that says what to do, inside the LM call, so it counts as a failed call of its role.

The request then goes to the server through dspy's native engine (``engine="lm15"``, an ordinary
``dspy.LM`` pointed at the server): no litellm, whatever the environment says about OpenAI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import dspy
from dspy.lm15 import Request, Response, response_to_events
from dspy.utils.exceptions import LMError as DSPyLMError

from pytest_gepa.local_model import packages, server
from pytest_gepa.local_model.packages import parse_model

# Tiny models often ramble until the limit; 384 tokens caps a call at several seconds on one CPU core
# and still leaves room for a reflection LM's proposed instruction.
MAX_TOKENS = 384
SUPPORTED_PARAMS = frozenset({"temperature", "max_tokens", "top_p", "stop", "seed", "response_format"})


class LocalModelError(DSPyLMError, packages.LocalModelError):  # type: ignore[misc]  # dspy has no types
    """A ``LocalModelError`` as it leaves the engine: dspy passes its own LM errors on unchanged."""


class LocalEngine:
    """The embedded model as a dspy engine; defined at module level so ``dspy.LM.dump_state`` saves it."""

    # llama.cpp turns a JSON schema into a grammar that the answer cannot leave: dspy's JSONAdapter
    # then gets parseable output even from a 135M model, which free-form JSON rarely is.
    supports_function_calling = False
    supports_reasoning = False
    supports_response_schema = True
    supported_params = SUPPORTED_PARAMS

    def __init__(self, local_model: str) -> None:
        self.local_model = local_model
        self.spec = parse_model(local_model)
        self._lms: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, Any]) -> LocalEngine:
        return self  # one engine per model file: its server and its clients are shared

    def base_url(self) -> str:
        """Start the server if needed; its OpenAI-compatible base URL."""
        try:
            return server.ensure_server(self.spec).base_url + "/v1"
        except packages.LocalModelError as exc:
            if isinstance(exc, DSPyLMError):
                raise
            raise LocalModelError(str(exc)) from exc

    def _served_by(self, model: str, base_url: str) -> Any:
        with self._lock:
            if base_url not in self._lms:
                self._lms[base_url] = dspy.LM(model, api_base=base_url, api_key="local", engine="lm15",
                                              cache=False, num_retries=0)
            return self._lms[base_url]

    def complete(self, request: Request) -> Response:
        lm = self._served_by(request.model, self.base_url())
        # The outer LM runs this call's callbacks, history, usage and retries; this one only sends it.
        with dspy.context(usage_tracker=None, disable_history=True, callbacks=[]):
            response = lm(llama_request(request), cache=False)
        if not isinstance(response, Response):
            raise TypeError(f"the embedded model answered with {type(response).__name__}, not a Response")
        return response

    def stream(self, request: Request) -> Iterator[Any]:
        return iter(response_to_events(self.complete(request)))

    def close(self) -> None:
        pass  # the server stops at session end (plugin.pytest_unconfigure) or interpreter exit

    def dump_state(self) -> dict[str, Any]:
        return {"local_model": self.local_model}

    @classmethod
    def load_state(cls, state: Mapping[str, Any]) -> LocalEngine:
        return cls(str(state["local_model"]))


class AsyncLocalEngine:
    """The async counterpart dspy requires for ``acall``: the same engine, off the event loop."""

    def __init__(self, sync: LocalEngine) -> None:
        self.sync = sync

    def __deepcopy__(self, memo: dict[int, Any]) -> AsyncLocalEngine:
        return self

    async def complete(self, request: Request) -> Response:
        return await asyncio.to_thread(self.sync.complete, request)

    async def stream(self, request: Request) -> AsyncIterator[Any]:
        for event in response_to_events(await self.complete(request)):
            yield event

    async def aclose(self) -> None:
        pass

    def dump_state(self) -> dict[str, Any]:
        return self.sync.dump_state()

    @classmethod
    def load_state(cls, state: Mapping[str, Any]) -> AsyncLocalEngine:
        return cls(LocalEngine.load_state(state))


def llama_request(request: Request) -> Request:
    """The request as llama-cpp-python's server reads it: ``max_tokens`` under that name (the OpenAI
    wire now says ``max_completion_tokens``, which the server ignores) and a structured-output schema
    in the form its grammar takes (``{"type": "json_object", "schema": ...}``)."""
    config = request.config
    extensions = dict(config.extensions or {})
    changes: dict[str, Any] = {}
    if config.max_tokens is not None:
        extensions["max_tokens"], changes["max_tokens"] = config.max_tokens, None
    schema = _json_schema(config.response_format)
    if schema is not None:
        extensions["response_format"] = {"type": "json_object", "schema": schema}
        changes["response_format"] = None
    if not changes:
        return request
    config = dataclasses.replace(config, extensions=extensions, **changes)
    return dataclasses.replace(request, config=config)


def _json_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema of a canonical response format ``{"type": "json_schema", "schema": ...}``."""
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        found = response_format.get("schema")
        return dict(found) if isinstance(found, Mapping) else None
    return None


def local_lm(model: str, *, retries: int = 3) -> Any:
    """A ``dspy.LM`` for ``local/<name>`` or a ``.gguf`` path. Cheap: nothing starts until its first call."""
    spec = parse_model(model)
    engine = LocalEngine(spec.text if spec.known is not None else str(spec.path))
    return dspy.LM(
        f"openai/{spec.served_name}",
        engine=engine,
        async_engine=AsyncLocalEngine(engine),
        num_retries=retries,
        # Greedy decoding: the same prompt gets the same answer, so runs repeat and cassettes are stable.
        temperature=0.0,
        max_tokens=MAX_TOKENS,
    )


__all__ = ["MAX_TOKENS", "AsyncLocalEngine", "LocalEngine", "LocalModelError", "local_lm"]
