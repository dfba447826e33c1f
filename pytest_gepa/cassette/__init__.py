"""Record / replay of LM calls: the cassette file (``store``) and the LM that reads and writes it
(``lm``, which subclasses a dspy type and so is imported only when an LM is wrapped)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_gepa.cassette.store import Cassette, CassetteMissError, cassette_path

if TYPE_CHECKING:
    from pytest_gepa.cassette.lm import CassetteLM, CassetteSource


def wrap(lm: Any, *, role: str, cassette: CassetteSource, replay: bool, target: str = "") -> CassetteLM:
    """``lm`` behind ``cassette`` (see ``cassette.lm.wrap``); imports dspy only now."""
    from pytest_gepa.cassette import lm as cassette_lm

    return cassette_lm.wrap(lm, role=role, cassette=cassette, replay=replay, target=target)


def unwrap(lm: Any) -> Any:
    """The LM behind a cassette wrapper (``lm`` itself when it has none)."""
    from pytest_gepa.cassette.lm import CassetteLM

    return lm.inner if isinstance(lm, CassetteLM) else lm


__all__ = ["Cassette", "CassetteMissError", "cassette_path", "unwrap", "wrap"]
