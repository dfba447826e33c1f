"""Example ids: the row's ``id`` column, else a hash of its input fields only.

An id names one example across edits that do not change it: fixing a label or adding a metadata
column keeps every id, so a gate's paired regression check keeps comparing the same examples and
the hash split never moves a row. The id travels on the ``dspy.Example`` under :data:`ID_KEY`, a
``dspy_`` key, which dspy keeps across ``copy()`` and ``with_inputs()`` and leaves out of
``inputs()``, ``keys()`` and ``items()``, so neither the program nor the metric sees it.

Nothing here imports dspy.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_gepa.canonical import digest
from pytest_gepa.data.readers import Row, kind_of
from pytest_gepa.errors import DataFileError

ID_COLUMN = "id"
"""The optional per-row column that names an example; metadata, never an input or a label."""

ID_KEY = "dspy_gepa_id"
"""Where an Example made by ``load_examples`` keeps its id (dspy hides ``dspy_`` keys)."""

HASH_ID_LENGTH = 12
"""Hex digits of a hashed id: 48 bits, so a file would need millions of rows to risk a clash."""


def input_hash_id(inputs: Mapping[str, Any]) -> str:
    """The id of an example without an ``id`` column: a short hash of its input fields and values."""
    return digest(dict(inputs), length=HASH_ID_LENGTH)


def example_id(example: Any) -> str:
    """The id of any ``dspy.Example``: the one its ``ExampleSet`` gave it, else a hash of its inputs.

    An Example without inputs set (no ``with_inputs``) is hashed on all its fields.
    """
    stored = example.get(ID_KEY)
    if isinstance(stored, str) and stored:
        return stored
    try:
        fields = example.inputs().toDict()
    except ValueError:  # dspy's word for "with_inputs was never called"
        fields = example.toDict()
    return input_hash_id({key: value for key, value in fields.items() if not str(key).startswith("dspy_")})


def given_id(path: Path, row: Row) -> str | None:
    """The row's ``id`` column as text, or None when the row has none; ``DataFileError`` if it is empty."""
    if ID_COLUMN not in row.fields:
        return None
    value = row.fields[ID_COLUMN]
    # bool is an int to Python, but `id: yes` in YAML is a typo, not a name.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if value is None or isinstance(value, str):
        raise DataFileError(
            path,
            f"{row.subject} has an empty 'id'; give it a value, or leave the 'id' out of every row "
            "to name each example by a hash of its inputs",
            line=row.line,
        )
    raise DataFileError(
        path, f"{row.subject} has id {value!r}, which is {kind_of(value)}; use text or a whole number",
        line=row.line,
    )
