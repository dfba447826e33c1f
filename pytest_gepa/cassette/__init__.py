"""Record / replay of LM calls: the cassette file (``store``), the document a request keys on
(``request``) and the dspy engine that reads and writes it (``engine``, which imports dspy and so
loads only when an LM is wrapped)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_gepa.cassette.store import Cassette, CassetteMissError, cassette_path

if TYPE_CHECKING:
    from pytest_gepa.cassette.engine import CassetteSource


def wrap(lm: Any, *, role: str, cassette: CassetteSource, replay: bool, target: str = "") -> Any:
    """``lm`` behind ``cassette`` (see ``cassette.engine.wrap``); imports dspy only now."""
    from pytest_gepa.cassette import engine

    return engine.wrap(lm, role=role, cassette=cassette, replay=replay, target=target)


def unwrap(lm: Any) -> Any:
    """The LM behind a cassette wrapper (``lm`` itself when it has none)."""
    from pytest_gepa.cassette import engine

    return engine.unwrap(lm)


__all__ = ["Cassette", "CassetteMissError", "cassette_path", "unwrap", "wrap"]
