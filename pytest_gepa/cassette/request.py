"""The document a cassette keys a canonical request (``dspy.lm15.Request``) on.

The request is laid out as the OpenAI-style call it came from, so that a plain chat call keys as it
did when cassettes keyed on the adapter's ``messages=`` and keyword arguments: the model, every
message (a single text part as its text, anything else part by part, all fields), and every set
generation parameter under its OpenAI name. A structured-output schema dspy generated from a
pydantic model (``strict`` JSON schema) keys as the model's name and schema, as before.

The layout is lossless: every field of the request that is set lands somewhere in the document, so
two requests that could be answered differently never share a key. Only duck typing on lm15's
dataclasses here: importing this module imports no dspy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pytest_gepa.canonical import plain
from pytest_gepa.cassette.store import is_transport_setting

# Request fields laid out on their own; any other field that is set goes into the params.
_LAID_OUT = frozenset({"model", "messages", "system", "tools", "config"})
# Config fields under the name an OpenAI-style call gives them.
_OPENAI_NAMES = {"user_id": "user"}


def _data(value: Any) -> Any:
    """A dataclass, tuple or mapping as plain JSON-ready data (every field, recursively)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _data(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): _data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_data(item) for item in value]
    return plain(value)


def _is_plain_text(part: Any) -> bool:
    return getattr(part, "type", None) == "text" and not getattr(part, "continuation", ())


def _content(parts: Any) -> Any:
    if isinstance(parts, str):
        return parts
    parts = tuple(parts or ())
    if len(parts) == 1 and _is_plain_text(parts[0]):
        return parts[0].text
    return [_data(part) for part in parts]


def _message(message: Any) -> dict[str, Any]:
    laid = {"role": message.role, "content": _content(message.parts)}
    extra = {field.name: _data(getattr(message, field.name)) for field in dataclasses.fields(message)
             if field.name not in ("role", "parts") and getattr(message, field.name)}
    return {**laid, **extra}


def _response_format(value: Any) -> Any:
    # dspy sends a pydantic output model as a strict JSON schema under the model's name.
    if isinstance(value, Mapping) and set(value) == {"type", "name", "schema", "strict"} \
            and value["type"] == "json_schema" and value["strict"] is True:
        return {"pydantic_model": value["name"], "schema": _data(value["schema"])}
    return _data(value)


def _params(request: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    config = request.config
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None or value == () or field.name == "extensions":
            continue
        name = _OPENAI_NAMES.get(field.name, field.name)
        params[name] = _response_format(value) if name == "response_format" else _data(value)
    for name, value in (config.extensions or {}).items():
        # An extension spelled like a laid-out parameter keeps its own place.
        params[name if name not in params else f"extensions.{name}"] = _data(value)
    if request.tools:
        params["tools"] = _data(request.tools)
    for field in dataclasses.fields(request):
        value = getattr(request, field.name)
        if field.name not in _LAID_OUT and value not in (None, (), {}):
            params[f"request.{field.name}"] = _data(value)
    # A credential that reached the request as a provider extension stays out of keys and files.
    return {name: value for name, value in params.items() if not is_transport_setting(name)}


def request_document(request: Any, *, model_type: str = "chat") -> dict[str, Any]:
    """What a cassette keys ``request`` on and writes into its line."""
    messages: list[dict[str, Any]] = []
    if request.system is not None:
        messages.append({"role": "system", "content": _content(request.system)})
    messages.extend(_message(message) for message in request.messages)
    document: dict[str, Any] = {"model": request.model, "messages": messages, "params": _params(request)}
    if model_type != "chat":
        document["model_type"] = model_type
    return document


__all__ = ["request_document"]
