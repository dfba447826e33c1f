"""The ``dspy.LM`` on the embedded model: ``local_lm("local/smollm2")`` or a path to a ``.gguf`` file.

Its requests go to llama-cpp-python's OpenAI-compatible server, through litellm like any other
provider. The server starts on the LM's first call, not when the LM is built: the role fixtures build
every LM at session start whatever the mode, and a replayed gate answers every call from its
cassette, so a replay on a machine without the ``local`` extra never needs the model. Everything that
can fail at that first call fails as a ``LocalModelError`` that says what to do.
"""

from __future__ import annotations

from typing import Any

import dspy
from dspy.utils.callback import with_callbacks

from pytest_gepa.local_model import server
from pytest_gepa.local_model.packages import parse_model

# Tiny models often ramble until the limit; 384 tokens caps a call at several seconds on one CPU core
# and still leaves room for a reflection LM's proposed instruction.
MAX_TOKENS = 384

# ``BaseLM.__call__`` runs the LM callbacks around the call; the server start must happen inside
# them so a failed start is counted as a failed LM call of its role. So LocalLM's own ``__call__``
# carries the callbacks and calls the undecorated base.
_base_call = getattr(dspy.BaseLM.__call__, "__wrapped__", dspy.BaseLM.__call__)
_base_acall = getattr(dspy.BaseLM.acall, "__wrapped__", dspy.BaseLM.acall)


# Both ignores hold only under --strict, which sees dspy's LM as Any and its decorator as untyped.
class LocalLM(dspy.LM):  # type: ignore[misc, unused-ignore]
    """A ``dspy.LM`` on the embedded model; its server's address is found at call time."""

    def __init__(self, model: str, *, local_model: str, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.local_model = local_model
        self._spec = parse_model(local_model)

    def base_url(self) -> str:
        """Start the server if needed; its OpenAI-compatible base URL."""
        return server.ensure_server(self._spec).base_url + "/v1"

    @property
    def supports_response_schema(self) -> bool:
        # llama.cpp turns a JSON schema into a grammar that the answer cannot leave: dspy's JSONAdapter
        # then gets parseable output even from a 135M model, which free-form JSON rarely is.
        return True

    @with_callbacks  # type: ignore[untyped-decorator, unused-ignore]
    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        return _base_call(self, prompt, messages=messages, **_server_kwargs(kwargs, self.base_url()))

    @with_callbacks  # type: ignore[untyped-decorator, unused-ignore]
    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        import asyncio

        api_base = await asyncio.to_thread(self.base_url)
        return await _base_acall(self, prompt, messages=messages, **_server_kwargs(kwargs, api_base))

    def dump_state(self) -> dict[str, Any]:
        return {**super().dump_state(), "local_model": self.local_model}


def _server_kwargs(kwargs: dict[str, Any], api_base: str) -> dict[str, Any]:
    """The call's settings as llama-cpp-python's server reads them: its address, and a structured-output
    schema in the form its grammar takes (``{"type": "json_object", "schema": ...}``)."""
    kwargs = {**kwargs, "api_base": api_base}
    schema = _json_schema(kwargs.get("response_format"))
    if schema is not None:
        kwargs["response_format"] = {"type": "json_object", "schema": schema}
    return kwargs


def _json_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema of a response format: a pydantic model (dspy's JSONAdapter) or OpenAI's
    ``{"type": "json_schema", ...}``; None for anything else."""
    from pydantic import BaseModel

    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        schema: dict[str, Any] = response_format.model_json_schema()
        return schema
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        found = (response_format.get("json_schema") or {}).get("schema")
        return found if isinstance(found, dict) else None
    return None


def local_lm(model: str, *, retries: int = 3) -> LocalLM:
    """A ``dspy.LM`` for ``local/<name>`` or a ``.gguf`` path. Cheap: nothing starts until its first call."""
    spec = parse_model(model)
    return LocalLM(
        f"openai/{spec.served_name}",
        local_model=spec.text if spec.known is not None else str(spec.path),
        api_key="local",
        engine="litellm",
        num_retries=retries,
        # Greedy decoding: the same prompt gets the same answer, so runs repeat and cassettes are stable.
        temperature=0.0,
        max_tokens=MAX_TOKENS,
    )
