"""Canonical JSON and content hashes: equal content hashes the same from any file format or run.

Fingerprints of data, rubrics, metrics and programs, example ids and cassette keys all come from
:func:`digest`, so two parts of the plugin never disagree about what "the same" means.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: mappings, lists and scalars, pydantic models as their JSON form;
    anything else as its text."""
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # YAML dates and timestamps, and anything else an Example may hold


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: one text per content."""
    return json.dumps(plain(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def digest(value: Any, *, length: int | None = None) -> str:
    """The sha256 of ``value``'s canonical JSON (a ``str`` is hashed as it is), cut to ``length``."""
    text = value if isinstance(value, str) else canonical_json(value)
    full = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return full if length is None else full[:length]
