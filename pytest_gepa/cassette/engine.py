"""Record / replay as a dspy engine: ``complete(Request) -> Response``, wrapped around an LM's own.

``wrap(lm, ...)`` hands out a plain ``dspy.LM`` whose engine is a :class:`CassetteEngine`; dspy
keeps its adapters, callbacks (the meter), history and usage tracking around it. The engine keys
each canonical request, answers from the cassette under replay, and while recording sends the
request to the wrapped LM (``lm(request)``, dspy's public form), so the call goes out through
whichever engine dspy chose for that LM, with its own endpoint, key and retries.

Under replay nothing reaches the wrapped LM: not a call, and not the capability questions dspy's
adapters ask (``supports_response_schema`` and the like). Those are answered from what the
cassette recorded, so a replay builds no engine and imports neither litellm nor an HTTP client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import dspy
from dspy.lm15 import Message, Request, Response, TextPart, ThinkingPart, ToolCallPart, Usage, response_to_events
from dspy.utils.exceptions import LMError as DSPyLMError

from pytest_gepa import errors
from pytest_gepa.cassette.request import request_document
from pytest_gepa.cassette.store import Capabilities, Cassette, miss_message, no_cassette_message, request_key

# The cassette itself, or a zero-argument callable returning the current test's (None: none open),
# for a wrapper that lives for the session while cassettes come and go with the tests.
CassetteSource = Cassette | Callable[[], Cassette | None]

# Client settings belong to the wrapped LM's engine; an LM with a custom engine refuses them.
CLIENT_SETTINGS = frozenset({
    "api_key", "api_base", "base_url", "headers", "extra_headers", "timeout", "api_version",
    "azure_ad_token_provider", "organization", "project", "extra_query", "custom_llm_provider",
})


class CassetteMissError(DSPyLMError, errors.CassetteMissError):  # type: ignore[misc]  # dspy has no types
    """A cassette miss as it leaves the engine: dspy passes its own LM errors on unchanged (any
    other exception it would re-wrap), and the plugin still sees a ``CassetteMissError``."""


class CassetteEngine:
    """A role's calls seen through a cassette; ``inner`` is the LM whose engine does the real work."""

    def __init__(self, inner: Any, *, role: str, cassette: CassetteSource, replay: bool, target: str = "") -> None:
        self.inner = inner
        self.role = role
        self.cassette = cassette
        self.replay = replay
        self.target = target
        self.model = str(inner.model)
        self.model_type = str(getattr(inner, "model_type", "chat"))
        self._answers: dict[str, Any] = {}  # the wrapped LM's answers to dspy's capability questions
        self._quiet: Any = None  # the wrapped LM without its callbacks, made at the first recorded call

    def current_cassette(self) -> Cassette | None:
        return self.cassette if isinstance(self.cassette, Cassette) else self.cassette()

    def __deepcopy__(self, memo: dict[int, Any]) -> CassetteEngine:
        return self  # programs are deep-copied; the cassette (and its counters) stays one

    # -- what the model supports: recorded, so a replay asks nobody -------------------------------
    # dspy reads these four names off a custom engine (dspy.clients.capabilities).

    def capabilities(self) -> Capabilities:
        """Replay: what the cassette recorded for this role and model (all-unsupported if nothing,
        which at worst formats a different prompt, so a miss). Record: the wrapped LM's answer."""
        if self.replay:
            cassette = self.current_cassette()
            recorded = cassette.capabilities_of(self.role, self.model) if cassette is not None else None
            return recorded if recorded is not None else Capabilities()
        return live_capabilities(self._ask_inner)

    def _supports(self, name: str, recorded: Callable[[Capabilities], bool]) -> bool:
        return recorded(self.capabilities()) if self.replay else bool(self._ask_inner(name))

    def _ask_inner(self, name: str) -> Any:
        """Recording asks the wrapped LM only the question asked, as the adapter would have, and once:
        dspy asks before every call, and a model's answer (a catalog or litellm lookup) does not change."""
        if name not in self._answers:
            self._answers[name] = getattr(self.inner, name, None)
        return self._answers[name]

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
        return {str(p) for p in (self._ask_inner("supported_params") or ())}

    # -- the engine contract ----------------------------------------------------------------------

    def complete(self, request: Request) -> Response:
        document = request_document(request, model_type=self.model_type)
        key = request_key(document)
        cassette = self.current_cassette()
        if self.replay:
            recorded = cassette.lookup(key) if cassette is not None else None
            if recorded is None:
                raise self._miss(cassette, document)
            return response_of(recorded, model=request.model)
        # Recording: every call reaches the LM, a repeated request too (the draws of an example are
        # fresh calls, as without a cassette), and the cassette keeps every answer.
        response = self._call_inner(request)
        if cassette is not None:
            if not cassette.has_capabilities(self.role, self.model):
                cassette.note_capabilities(self.role, self.model, live_capabilities(self._ask_inner))
            cassette.add(key, self.role, document, outputs_of(response))
        return response

    def stream(self, request: Request) -> Iterator[Any]:
        return iter(response_to_events(self.complete(request)))

    def close(self) -> None:
        pass  # the wrapped LM owns its engines

    # A program saved with this LM on a predictor (``program.save``, ``dump_state``) keeps the model and
    # its settings (the outer LM's own state); loaded, it calls that model directly, with no cassette.

    def dump_state(self) -> dict[str, Any]:
        return {"model": self.model, "model_type": self.model_type, "role": self.role}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> CassetteEngine:
        inner = dspy.LM(str(state["model"]), model_type=str(state.get("model_type", "chat")))
        return cls(inner, role=str(state.get("role", "task")), cassette=lambda: None, replay=False)

    def _miss(self, cassette: Cassette | None, document: dict[str, Any]) -> CassetteMissError:
        target = self.target or (cassette.target if cassette is not None else "") or "this test"
        if cassette is None:
            return CassetteMissError(no_cassette_message(target, self.role, self.model, document))
        miss = CassetteMissError(miss_message(target, self.role, self.model, document, cassette.path))
        # dspy and GEPA catch errors inside evaluations; the target re-raises the first miss after.
        cassette.misses.append(miss)
        return miss

    def _quiet_inner(self) -> Any:
        """The wrapped LM without its callbacks, made once (a copy shares the LM's engines and
        connections; two threads making it at once make two equal copies, either is right)."""
        if self._quiet is None:
            quiet = self.inner.copy()
            quiet.callbacks = []
            self._quiet = quiet
        return self._quiet

    def _call_inner(self, request: Request) -> Response:
        """The wrapped LM answers the canonical request through its own engine choice.

        Past dspy's response cache (which ignores api_base in its key, so it could hand back another
        endpoint's answer; a recording holds this endpoint's). The outer LM already runs the
        callbacks, history and usage accounting of this call: the inner call runs without them, so
        nothing is counted twice.
        """
        with dspy.context(usage_tracker=None, disable_history=True, callbacks=[]):
            response = self._quiet_inner()(request, cache=False)
        if not isinstance(response, Response):
            raise TypeError(f"{self.model!r}: the wrapped LM answered a Request with {type(response).__name__}, "
                            "not a dspy.lm15.Response")
        return response


class AsyncCassetteEngine:
    """The async counterpart dspy requires for ``acall``: the same engine, off the event loop."""

    def __init__(self, sync: CassetteEngine) -> None:
        self.sync = sync

    def __deepcopy__(self, memo: dict[int, Any]) -> AsyncCassetteEngine:
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
    def load_state(cls, state: dict[str, Any]) -> AsyncCassetteEngine:
        return cls(CassetteEngine.load_state(state))


def live_capabilities(ask: Callable[[str], Any]) -> Capabilities:
    """What the wrapped LM says it supports, each question put through ``ask`` (dspy asks its model
    catalog, or litellm: only while recording)."""
    return Capabilities(
        function_calling=bool(ask("supports_function_calling")),
        reasoning=bool(ask("supports_reasoning")),
        response_schema=bool(ask("supports_response_schema")),
        params=frozenset(str(p) for p in (ask("supported_params") or ())),
    )


# -- the response as a cassette line holds it ---------------------------------------------------
# A plain answer is its text (the form every cassette so far holds); anything more is an object.


def outputs_of(response: Response) -> list[Any]:
    parts = response.message.parts
    text = "".join(part.text for part in parts if isinstance(part, TextPart))
    thinking = "".join(part.text for part in parts if isinstance(part, ThinkingPart))
    calls = [{"id": part.id, "name": part.name, "input": part.input} for part in parts
             if isinstance(part, ToolCallPart)]
    finish = response.finish_reason
    if not thinking and not calls and finish in (None, "stop"):
        return [text]
    output: dict[str, Any] = {"text": text}
    if thinking:
        output["reasoning_content"] = thinking
    if calls:
        output["tool_calls"] = calls
    if finish not in (None, "stop"):
        output["finish_reason"] = finish
    return [output]


def response_of(outputs: list[Any], *, model: str) -> Response:
    """A recorded answer as the Response the engine returns. Replayed calls spent no tokens."""
    output = outputs[0] if outputs else ""
    if isinstance(output, str):
        return Response(id=None, model=model, message=Message.assistant([TextPart(output)]),
                        finish_reason="stop", usage=Usage())
    parts: list[Any] = []
    if output.get("reasoning_content"):
        parts.append(ThinkingPart(str(output["reasoning_content"])))
    if output.get("text"):
        parts.append(TextPart(str(output["text"])))
    for number, call in enumerate(output.get("tool_calls") or []):
        function = call.get("function") or {}  # as dspy's litellm outputs held it
        arguments = call.get("input", function.get("arguments", {}))
        if isinstance(arguments, str):
            arguments = json.loads(arguments or "{}")
        parts.append(ToolCallPart(id=str(call.get("id") or f"call_{number}"),
                                  name=str(call.get("name") or function.get("name")), input=arguments))
    finish = output.get("finish_reason") or ("tool_call" if output.get("tool_calls") else "stop")
    return Response(id=None, model=model, message=Message.assistant(parts or [TextPart("")]),
                    finish_reason=finish, usage=Usage())


def engine_of(lm: Any) -> CassetteEngine | None:
    engine = getattr(lm, "engine", None)
    return engine if isinstance(engine, CassetteEngine) else None


def wrap(lm: Any, *, role: str, cassette: CassetteSource, replay: bool, target: str = "") -> Any:
    """``lm`` behind ``cassette``: a ``dspy.LM`` of the same model and generation settings whose
    engine is the cassette. An LM already behind one is re-wrapped from its inner LM, so a call is
    recorded once, into the cassette given here. The wrapper carries the LM's callbacks (the meter
    among them): they see every call, replayed ones too."""
    found = engine_of(lm)
    inner = found.inner if found is not None else lm
    engine = CassetteEngine(inner, role=role, cassette=cassette, replay=replay, target=target)
    outer = dspy.LM(engine.model, model_type=engine.model_type, engine=engine,
                    async_engine=AsyncCassetteEngine(engine), cache=False, num_retries=0)
    # The wrapped LM's own settings, as it would send them; its connection stays with it.
    kwargs = getattr(inner, "kwargs", None)
    outer.kwargs = {k: v for k, v in (kwargs if isinstance(kwargs, dict) else {}).items()
                    if k not in CLIENT_SETTINGS}
    outer.callbacks = list(getattr(lm, "callbacks", None) or [])
    return outer


def unwrap(lm: Any) -> Any:
    """The LM behind a cassette wrapper (``lm`` itself when it has none)."""
    found = engine_of(lm)
    return found.inner if found is not None else lm


__all__ = ["AsyncCassetteEngine", "CassetteEngine", "CassetteMissError", "CassetteSource", "unwrap", "wrap"]
