"""Record / replay of LM calls, one cassette per target beside its artifact.

A cassette is JSON lines sorted by key, one line per distinct request: what the model was asked
(model, messages, sampling settings) and what it answered. The key is a hash of exactly that, so
a changed prompt is a miss, never a stale answer. Credentials and headers are never part of a key
or a line: only the whitelisted sampling settings are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_gepa.errors import CassetteMissError, GepaError

# The request settings that change an answer; everything else (keys, bases, headers) stays out.
SAMPLING_KEYS = ("temperature", "max_tokens", "max_completion_tokens", "top_p", "n", "stop", "seed",
                 "response_format", "rollout_id", "tools", "tool_choice", "reasoning_effort")
PROMPT_PREVIEW_LINES = 6


def cassette_path(artifact_path: Path) -> Path:
    return artifact_path.with_name(artifact_path.stem + ".cassette.jsonl")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return "" if content is None else str(content)


def normalize_messages(messages: Any, prompt: Any = None) -> list[dict[str, str]]:
    """Messages as plain ``{"role", "content"}`` text, the form both recording and replay see."""
    if messages is None:
        return [{"role": "user", "content": _text(prompt)}]
    return [{"role": str(m.get("role", "")), "content": _text(m.get("content"))} for m in messages]


def request_of(model: str, messages: list[dict[str, str]], settings: dict[str, Any]) -> dict[str, Any]:
    params = {k: settings[k] for k in SAMPLING_KEYS if settings.get(k) is not None}
    return json.loads(json.dumps({"model": model, "messages": messages, "params": params}, default=str))


def request_key(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class Cassette:
    """The recorded calls of one target; thread-safe, written whole at the end of the target."""

    path: Path
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    misses: list[CassetteMissError] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: Path) -> Cassette:
        """Read a cassette; a corrupt line is an error naming the file and the line."""
        cassette = cls(path)
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
                key, response = entry["key"], entry["response"]
                if not isinstance(key, str) or not isinstance(response, list):
                    raise ValueError("'key' must be text and 'response' a list")
            except (ValueError, KeyError, TypeError) as exc:
                raise GepaError(f"{path}:{number}: corrupt cassette line ({exc}); re-record it with "
                                "`pytest --gepa-record`") from exc
            cassette.entries[key] = entry
        return cassette

    def __deepcopy__(self, memo: dict[int, Any]) -> Cassette:
        return self  # shared by every copy of the LM that uses it

    def lookup(self, key: str) -> list[Any] | None:
        with self._lock:
            entry = self.entries.get(key)
        return None if entry is None else list(entry["response"])

    def add(self, key: str, role: str, request: dict[str, Any], response: list[Any]) -> None:
        with self._lock:
            self.entries.setdefault(key, {"key": key, "role": role, "request": request, "response": response})

    def save(self) -> None:
        """Write atomically, sorted by key, so a re-recording of the same run is a zero diff."""
        text = "".join(json.dumps(self.entries[key], sort_keys=True, ensure_ascii=False) + "\n"
                       for key in sorted(self.entries))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=self.path.parent,
                                             prefix=f".{self.path.name}.", suffix=".tmp", delete=False)
        try:
            with handle:
                handle.write(text)
            os.replace(handle.name, self.path)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise


def miss_message(target: str, role: str, model: str, messages: list[dict[str, str]], path: Path) -> str:
    prompt = "\n".join(m["content"] for m in messages if m["role"] != "system") or messages[-1]["content"]
    preview = "\n".join("    " + line for line in prompt.strip().splitlines()[:PROMPT_PREVIEW_LINES])
    return (
        f"{target}: no recorded answer for a {role} LM call to {model!r} in '{path}'. The prompt began:\n"
        f"{preview}\n"
        "The prompt, data or model changed since the cassette was recorded. Re-record it with "
        f"`pytest --gepa-record --gepa-compile {target}` (compile and gate) or `pytest --gepa-record {target}` "
        "(gate only)."
    )


def wrap(lm: Any, *, role: str, cassette: Cassette, replay: bool, target: str) -> Any:
    """The role LM behind a cassette: replay answers only from it, record passes through and keeps."""
    from pytest_gepa._dspy_hooks import CassetteLM

    return CassetteLM(lm, role=role, cassette=cassette, replay=replay, target=target)


__all__ = ["Cassette", "CassetteMissError", "cassette_path", "wrap"]
