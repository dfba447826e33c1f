"""The cassette file: one target's recorded LM calls, keyed on the whole request.

A cassette is JSON lines sorted by key. A call line holds what the model was asked (model, every
message with all its parts, tool calls and tool results, every request parameter) and what it
answered; its key is the digest of exactly that request, so any change to what would be sent is a
miss, never a stale answer. Only credentials and transport settings stay out of both the key and
the line (a deny-list: a parameter nobody thought of is kept, because it may change the answer).
A capabilities line per role and model holds what the LM said it supports when recording, so a
replay formats the same prompts without asking anyone. ``request`` lays a canonical request out as
the document a key is the digest of.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_gepa._io import atomic_write
from pytest_gepa.canonical import digest, plain
from pytest_gepa.errors import CassetteMissError, GepaError, redact, redactor

# Settings that say how to reach the endpoint or who is calling, never what is asked: they stay out
# of keys (a replay has no key and no server) and out of files (they can hold secrets).
TRANSPORT_KEYS = frozenset({
    "api_key", "api_base", "base_url", "api_version", "headers", "extra_headers", "extra_query",
    "timeout", "request_timeout", "stream_timeout", "num_retries", "max_retries", "retry_strategy",
    "cache", "caching", "organization", "project", "custom_llm_provider", "azure_ad_token",
    "azure_ad_token_provider", "client", "http_client", "aws_access_key_id", "aws_secret_access_key",
    "aws_session_token", "aws_profile_name", "vertex_credentials", "vertex_project", "vertex_location",
})
# Credentials under names the list above does not know ("my_api_key", "auth_token", ...); the word
# boundaries keep "max_tokens" and "max_completion_tokens", which change the answer.
CREDENTIAL_NAME = re.compile(r"(?:^|_)(?:key|api_?key|secret|password|passwd|credentials?|token|auth\w*)(?:$|_)",
                             re.IGNORECASE)
KEY_LENGTH = 32
CAPABILITIES_PREFIX = "lm "  # sorts after every hex call key: capability lines close the file
PROMPT_PREVIEW_LINES = 6


def cassette_path(artifact_path: Path) -> Path:
    """The cassette beside an artifact: ``<name>.cassette.jsonl``."""
    return artifact_path.with_name(artifact_path.stem + ".cassette.jsonl")


def is_transport_setting(name: str) -> bool:
    """Whether request parameter ``name`` is a credential or transport setting (kept out of cassettes)."""
    return name in TRANSPORT_KEYS or bool(CREDENTIAL_NAME.search(name))


def _json_ready(value: Any) -> Any:
    """``value`` as JSON; a pydantic model class (dspy's structured output) as its schema, so two
    different output schemas never share a key."""
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return {"pydantic_model": value.__name__, "schema": plain(value.model_json_schema())}
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if hasattr(value, "model_dump"):  # a pydantic message or tool object
        return _json_ready(value.model_dump())
    return plain(value)


def request_key(request: dict[str, Any]) -> str:
    return digest(request, length=KEY_LENGTH)


def _redacted(value: Any, hide: Callable[[str], str]) -> Any:
    """``value`` with every secret the plugin knows of hidden in its strings (the key is taken before)."""
    if isinstance(value, str):
        return hide(value)
    if isinstance(value, dict):
        return {key: _redacted(item, hide) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item, hide) for item in value]
    return value


@dataclass(frozen=True)
class Capabilities:
    """What an LM told dspy's adapters it supports; replayed so they format the same prompts."""

    function_calling: bool = False
    reasoning: bool = False
    response_schema: bool = False
    params: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"function_calling": self.function_calling, "reasoning": self.reasoning,
                "response_schema": self.response_schema, "params": sorted(self.params)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Capabilities:
        return cls(bool(data.get("function_calling")), bool(data.get("reasoning")),
                   bool(data.get("response_schema")), frozenset(str(p) for p in data.get("params") or ()))


def capabilities_key(role: str, model: str) -> str:
    return f"{CAPABILITIES_PREFIX}{role} {model}"


@dataclass
class Cassette:
    """The recorded calls of one target; thread-safe, written whole at the end of the target."""

    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # call lines by key
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)  # capability lines by key
    misses: list[CassetteMissError] = field(default_factory=list)
    target: str = ""  # the node id whose calls these are, for messages
    replayed: int = 0  # calls answered from this cassette
    _served: dict[str, int] = field(default_factory=dict, repr=False)  # answers replayed so far, by key
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: Path, *, target: str = "") -> Cassette:
        """Read a cassette; a corrupt line is an error naming the file and the line."""
        cassette = cls(path, target=target)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise
        except (OSError, UnicodeDecodeError) as exc:
            raise GepaError(f"{path}: the cassette cannot be read ({exc})") from exc
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                    raise ValueError("each line must be an object whose 'key' is text")
                if "capabilities" in entry:
                    if not isinstance(entry["capabilities"], dict):
                        raise ValueError("'capabilities' must be an object")
                    cassette.capabilities[entry["key"]] = entry
                    continue
                if not isinstance(entry["response"], list):
                    raise ValueError("'response' must be a list")
            except (ValueError, KeyError, TypeError) as exc:
                raise GepaError(f"{path}:{number}: corrupt cassette line ({exc}); re-record it with "
                                "`pytest --gepa-record`") from exc
            cassette.entries[entry["key"]] = entry
        return cassette

    def __deepcopy__(self, memo: dict[int, Any]) -> Cassette:
        return self  # shared by every copy of the LM that uses it

    def lookup(self, key: str) -> list[Any] | None:
        """The next recorded answer to ``key`` (as a one-answer list), or None: a request made several
        times (the draws of one example) gets the answers recorded for it in turn, then the first again."""
        with self._lock:
            entry = self.entries.get(key)
            if entry is None:
                return None
            answers = entry["response"]
            served = self._served.get(key, 0)
            self._served[key] = served + 1
            self.replayed += 1
        return [answers[served % len(answers)]] if answers else []

    def add(self, key: str, role: str, request: dict[str, Any], response: list[Any]) -> None:
        """Keep one answer to ``key``; a request made again keeps every answer, in order, so a replay
        sees the draws the recording saw (one answer for all would make a noisy model look steady)."""
        answers = _json_ready(response)
        with self._lock:
            entry = self.entries.get(key)
            if entry is None:
                # The request is redacted as the file is written (``text``), once for every line.
                self.entries[key] = {"key": key, "role": role, "request": request, "response": list(answers)}
            else:
                entry["response"].extend(answers)

    def note_capabilities(self, role: str, model: str, capabilities: Capabilities) -> None:
        key = capabilities_key(role, model)
        line = {"key": key, "role": role, "model": model, "capabilities": capabilities.to_json()}
        with self._lock:
            self.capabilities.setdefault(key, line)

    def has_capabilities(self, role: str, model: str) -> bool:
        with self._lock:
            return capabilities_key(role, model) in self.capabilities

    def capabilities_of(self, role: str, model: str) -> Capabilities | None:
        """What ``model`` said it supports when recorded as ``role`` (else as any role), or None."""
        with self._lock:
            line = self.capabilities.get(capabilities_key(role, model))
            if line is None:
                line = next((entry for entry in self.capabilities.values() if entry.get("model") == model), None)
        return None if line is None else Capabilities.from_json(line["capabilities"])

    def text(self) -> str:
        """The file's text: one sorted-keys line per entry, sorted by key, so a re-recording of the
        same run is a zero diff."""
        hide = redactor()
        with self._lock:
            calls = {key: {**line, "request": _redacted(line["request"], hide)} for key, line in self.entries.items()}
            lines = {**calls, **self.capabilities}
        return "".join(json.dumps(lines[key], sort_keys=True, ensure_ascii=False) + "\n" for key in sorted(lines))

    def save(self) -> None:
        """Write the file atomically and under its lock, like an artifact."""
        atomic_write(self.path, self.text())


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return "" if content is None else str(content)


def prompt_preview(request: dict[str, Any]) -> str:
    """The first lines of the prompt's non-system messages, indented, for a miss message."""
    messages = [m for m in request["messages"] if isinstance(m, dict)]
    text = "\n".join(_message_text(m.get("content")) for m in messages if m.get("role") != "system")
    if not text and messages:
        text = _message_text(messages[-1].get("content"))
    return "\n".join("    " + line for line in redact(text).strip().splitlines()[:PROMPT_PREVIEW_LINES])


def miss_message(target: str, role: str, model: str, request: dict[str, Any], path: Path) -> str:
    return (
        f"{target}: no recorded answer for a {role} LM call to {model!r} in '{path}'. The prompt began:\n"
        f"{prompt_preview(request)}\n"
        "The prompt, data or model changed since the cassette was recorded. Re-record it with "
        f"`pytest --gepa-record --gepa-compile {target}` (compile and gate) or `pytest --gepa-record {target}` "
        "(gate only)."
    )


def no_cassette_message(target: str, role: str, model: str, request: dict[str, Any]) -> str:
    where = target or "this test"
    rerecord = f" {target}" if target else ""
    return (
        f"{where}: a {role} LM call to {model!r} under --gepa-replay, but no cassette is open for it. "
        f"The prompt began:\n{prompt_preview(request)}\n"
        "Replay answers only from cassettes and never calls the model. Record this test's calls with "
        f"`pytest --gepa-record{rerecord}`."
    )


__all__ = ["Capabilities", "Cassette", "CassetteMissError", "cassette_path", "is_transport_setting", "miss_message",
           "no_cassette_message", "request_key"]
