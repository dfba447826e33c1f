"""The errors and warnings pytest-gepa raises, each with a message a person can act on.

A ``GepaError`` raised while a test runs is turned into one readable test failure (no deep
traceback); see ``plugin.py``. Bad configuration is ``pytest.UsageError`` instead.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest


class GepaError(Exception):
    """A failure of the build step that the user can fix; its message says how."""


class DataFileError(GepaError):
    """A labeled-examples file that cannot be used, with the file and line at fault."""

    def __init__(self, path: Path | str, problem: str, *, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {problem}")


class RubricError(GepaError):
    """A rubric file that cannot be used, naming the file, the field and what was expected."""


class ArtifactError(GepaError):
    """A compiled artifact that is missing, unreadable, or no longer matches its target."""


class StaleArtifactError(ArtifactError):
    """The program or task model changed since the artifact was compiled."""


class LMError(GepaError):
    """An LM call failed (connection, HTTP error, timeout): an infrastructure error, not a score."""


class LMNotConfigured(GepaError):
    """A role LM the plugin handed out says it is not configured (no API key, no provider): the
    project's configuration to fix, never an LM error or a low score."""


class OptimizerError(GepaError):
    """The optimizer ran but produced nothing usable (for example the reflection LM never answered)."""


class CassetteMissError(GepaError):
    """Replay mode met an LM call that no cassette holds."""


class GepaWarning(pytest.PytestWarning):
    """Something changed that does not fail the gate but deserves a look (data or metric drift)."""


# -- which exceptions left an LM call ----------------------------------------------------------
# An exception is an LM error because of *where* it was raised, never because of its type: a user's
# own retriever raises ConnectionError and httpx errors too. Every LM the plugin hands out (the role
# LMs of a target, a rubric's judge) reports each exception leaving one of its calls here; scoring
# asks ``lm_call_role``. The mark is an attribute on the exception object itself, so it travels with
# it through threads and re-raises, and an exception the user's code raises instead (even one made
# "from" an LM error) carries none.

_LM_CALL_MARK = "pytest_gepa_left_lm_call"


def mark_lm_call_error(exc: BaseException | None, role: str) -> None:
    """Note that ``exc`` left a call of the ``role`` LM (task, reflection, judge) the plugin handed out."""
    if exc is None:
        return
    try:
        setattr(exc, _LM_CALL_MARK, role)
    except (AttributeError, TypeError):  # an exception class with __slots__ cannot be marked
        pass


def lm_call_role(exc: BaseException) -> str | None:
    """The role of the plugin's LM whose call ``exc`` left, or None when it was raised elsewhere."""
    role = getattr(exc, "__dict__", {}).get(_LM_CALL_MARK)
    return role if isinstance(role, str) else None


# -- secrets -------------------------------------------------------------------------------------
# Provider errors love to quote the key they rejected. Every message pytest-gepa shows or writes
# passes through ``redact`` first.

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|AUTH", re.IGNORECASE)
# Shapes of common API keys, for keys that reached a message without being registered.
_KEY_SHAPES = re.compile(r"\b(?:sk|pk|rk|hf|gsk|xai|key)-[A-Za-z0-9_\-]{8,}|\bBearer\s+[A-Za-z0-9._\-]{8,}")
MIN_SECRET_LENGTH = 6


def register_secret(value: object) -> None:
    """Remember a credential (an ``api_key``, a header value) so that ``redact`` hides it."""
    if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def redactor() -> Callable[[str], str]:
    """``redact`` for many texts at once: the secrets (registered, and secret-looking environment
    values) are gathered once, for a cassette's every line, instead of once per string."""
    with _SECRETS_LOCK:
        secrets = set(_SECRETS)
    secrets.update(value for name, value in os.environ.items()
                   if _SECRET_ENV.search(name) and len(value) >= MIN_SECRET_LENGTH)
    longest_first = sorted(secrets, key=len, reverse=True)

    def hide(text: str) -> str:
        for secret in longest_first:
            text = text.replace(secret, "***")
        return _KEY_SHAPES.sub("***", text)

    return hide


def redact(text: str) -> str:
    """``text`` with every known secret, secret-looking environment value and key-shaped token hidden."""
    return redactor()(text)


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` on one line (white space folded), cut to ``limit`` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def describe_error(exc: BaseException) -> str:
    """One line naming the error, with any credential it quotes hidden."""
    text = one_line(redact(str(exc)), 300)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
