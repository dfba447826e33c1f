"""Labeled examples from a data file, as ``dspy.Example``s with ids, a train/val/test split and a fingerprint.

A row's id is its ``id`` column, else a hash of its input fields (see :mod:`pytest_gepa.data.ids`).
Its split comes from its ``split`` column when it has one, otherwise from a hash of its id, so
adding rows never moves old rows between splits and relabelling a row never moves it either: a
compiled artifact's test scores stay comparable and no train row leaks into the devset. Every
problem with a file is a ``DataFileError`` naming the file and, where there is one, the line or
element at fault.

dspy is imported inside the functions that build examples: importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from pytest_gepa.canonical import digest
from pytest_gepa.data.ids import ID_COLUMN, ID_KEY, given_id, input_hash_id
from pytest_gepa.data.readers import Row, read_rows
from pytest_gepa.errors import DataFileError

if TYPE_CHECKING:
    import dspy

SplitSpec: TypeAlias = Mapping[str, float] | tuple[float, float, float]
"""Split ratios: ``{"train": 0.5, "val": 0.25, "test": 0.25}`` or ``(train, val, test)``."""

SPLITS: tuple[str, str, str] = ("train", "val", "test")
"""The split names, in the order ratios are given."""

DEFAULT_RATIOS: tuple[float, float, float] = (0.5, 0.25, 0.25)
"""Train / val / test shares for rows without a ``split`` column."""

SPLIT_COLUMN = "split"
"""The optional per-row column that pins a row to a split; never a field of the example."""

# Bumped when the canonical form changes, so old and new fingerprints never compare equal by accident.
# 2: ids are the id column or a hash of the inputs, and each example adds its content hash.
_FINGERPRINT_SCHEME = "pytest-gepa.examples/2"
_RATIO_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class ExampleSet:
    """The examples of one data file, with their train/val/test split and a content fingerprint."""

    path: Path
    inputs: tuple[str, ...]
    labels: tuple[str, ...]
    examples: list[dspy.Example]
    ids: list[str]
    splits: list[str]
    train: list[dspy.Example]
    val: list[dspy.Example]
    test: list[dspy.Example]
    ratios: tuple[float, float, float]
    fingerprint: str

    def __len__(self) -> int:
        """The number of examples in the file."""
        return len(self.examples)

    def __iter__(self) -> Iterator[dspy.Example]:
        """All examples, in file order."""
        return iter(self.examples)

    def split(self, name: str) -> list[dspy.Example]:
        """The examples of split ``name`` ('train', 'val' or 'test'), in file order."""
        _check_split_names((name,))
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def require(self, *split_names: str, purpose: str) -> None:
        """Raise ``DataFileError`` if any of ``split_names`` is empty, saying ``purpose`` needs it."""
        _check_split_names(split_names)
        empty = [name for name in split_names if not self.split(name)]
        if not empty:
            return
        names = " and ".join(repr(name) for name in empty)
        noun, pronoun = ("split is", "it") if len(empty) == 1 else ("splits are", "them")
        shares = ", ".join(f"{name} {ratio:g}" for name, ratio in zip(SPLITS, self.ratios, strict=True))
        raise DataFileError(
            self.path,
            f"the {names} {noun} empty (0 of {len(self)} examples) and {purpose} needs {pronoun}; "
            f"add rows, or mark some rows {' / '.join(repr(n) for n in empty)} in a 'split' column "
            f"(rows without one are split by hash: {shares})",
        )


def load_examples(
    path: str | os.PathLike[str], *, inputs: Sequence[str], split: SplitSpec | None = None
) -> ExampleSet:
    """Load a labeled-examples file into an ``ExampleSet``; ``inputs`` names the input fields."""
    from pytest_gepa.data.identified import IdentifiedExample

    path = Path(path)
    input_names = _check_inputs(inputs)
    ratios = parse_ratios(split)
    rows = read_rows(path)
    if not rows:
        raise DataFileError(path, "the file holds no examples; add at least one row")

    examples: list[dspy.Example] = []
    ids: list[str] = []
    assigned: list[str] = []
    labels: dict[str, None] = {}  # an ordered set: label names in first-seen order
    by_content: dict[str, Row] = {}
    by_id: dict[str, tuple[Row, bool]] = {}  # id -> the row that has it, and whether its id was given
    canonical: list[list[str]] = []
    for row in rows:
        fields = {key: value for key, value in row.fields.items() if key not in (SPLIT_COLUMN, ID_COLUMN)}
        _check_row_fields(path, row, fields, input_names)
        content = digest(fields)
        if content in by_content:
            first = by_content[content]
            raise DataFileError(
                path,
                f"{first.where} and {row.where} hold the same example; remove one of them",
                line=row.line,
            )
        by_content[content] = row
        given = given_id(path, row)
        row_id = given if given is not None else input_hash_id({name: fields[name] for name in input_names})
        if row_id in by_id:
            _raise_id_clash(path, row_id, by_id[row_id], (row, given is not None))
        by_id[row_id] = (row, given is not None)
        name = _split_from_column(path, row) or _split_from_hash(row_id, ratios)
        # As the base mapping, not **fields: a field named "base" or "self" would clash with __init__.
        examples.append(IdentifiedExample({**fields, ID_KEY: row_id}).with_inputs(*input_names))
        ids.append(row_id)
        assigned.append(name)
        labels.update((key, None) for key in fields if key not in input_names)
        # The content hash makes a relabel change the fingerprint although it keeps the id and split.
        canonical.append([row_id, name, content])

    fingerprint = digest({"scheme": _FINGERPRINT_SCHEME, "inputs": sorted(input_names), "examples": canonical})
    by_split: dict[str, list[dspy.Example]] = {name: [] for name in SPLITS}
    for example, name in zip(examples, assigned, strict=True):
        by_split[name].append(example)
    return ExampleSet(
        path=path,
        inputs=input_names,
        labels=tuple(labels),
        examples=examples,
        ids=ids,
        splits=assigned,
        train=by_split["train"],
        val=by_split["val"],
        test=by_split["test"],
        ratios=ratios,
        fingerprint=fingerprint,
    )


def _raise_id_clash(path: Path, example_id: str, first: tuple[Row, bool], second: tuple[Row, bool]) -> None:
    (first_row, first_given), (row, given) = first, second
    rows = f"{first_row.where} and {row.where}"
    if first_given and given:
        problem = f"{rows} have the same id {example_id!r}; give each row its own id"
    elif not first_given and not given:
        problem = (
            f"{rows} have the same inputs, so both would get the id {example_id!r}; keep one of them, "
            "or give each row its own 'id'"
        )
    else:
        problem = (
            f"{rows} share the id {example_id!r}: one has it in its 'id' column, the other as the "
            "hash of its inputs; give the row with the 'id' column another id"
        )
    raise DataFileError(path, problem, line=row.line)


# --- checks and splits --------------------------------------------------------------------------


def parse_ratios(split: SplitSpec | None) -> tuple[float, float, float]:
    """Validate ``split=`` into (train, val, test) shares; ``ValueError`` naming the bad value."""
    if split is None:
        return DEFAULT_RATIOS
    example = "{'train': 0.5, 'val': 0.25, 'test': 0.25} or (0.5, 0.25, 0.25)"
    values: list[object]
    if isinstance(split, Mapping):
        unknown = [key for key in split if key not in SPLITS]
        if unknown:
            raise ValueError(
                f"split= has unknown split name {unknown[0]!r}; use 'train', 'val' and 'test', like {example}"
            )
        values = [split.get(name, 0.0) for name in SPLITS]
    elif isinstance(split, Sequence) and not isinstance(split, (str, bytes)) and len(split) == 3:
        values = list(split)
    else:
        raise ValueError(f"split= takes train/val/test ratios like {example}, got {split!r}")
    shares: list[float] = []
    for name, value in zip(SPLITS, values, strict=True):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"split= ratio for {name!r} must be a number >= 0, got {value!r}")
        shares.append(float(value))
    train, val, test = shares
    total = train + val + test
    if abs(total - 1.0) > _RATIO_TOLERANCE:
        raise ValueError(
            f"split= ratios must sum to 1, got train {train:g} + val {val:g} + test {test:g} = {total:g}"
        )
    return (train, val, test)


def _check_inputs(inputs: Sequence[str]) -> tuple[str, ...]:
    if isinstance(inputs, str):
        raise ValueError(f"inputs= takes a list of field names, like inputs=[{inputs!r}], not a string")
    names = tuple(inputs)
    if not names:
        raise ValueError("inputs= is empty; name the fields the program reads, like inputs=['question']")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"inputs= holds {name!r}; each input must be a field name")
        if name == SPLIT_COLUMN:
            raise ValueError("inputs= names 'split', which is the split column, not a field; rename it")
        if name == ID_COLUMN:
            raise ValueError("inputs= names 'id', which is the id column, not a field; rename it")
    if len(set(names)) != len(names):
        raise ValueError(f"inputs= names a field twice: {list(names)!r}")
    return names


def _check_row_fields(path: Path, row: Row, fields: dict[Any, Any], inputs: tuple[str, ...]) -> None:
    for key in fields:
        if not isinstance(key, str):
            raise DataFileError(
                path, f"{row.subject} has field name {key!r}, which is not text; quote it", line=row.line
            )
        if key.startswith("dspy_"):
            # dspy.Example hides fields with this prefix from inputs(), labels() and metrics.
            raise DataFileError(
                path,
                f"{row.subject} has field {key!r}; DSPy reserves the 'dspy_' prefix, rename it",
                line=row.line,
            )
    for name in inputs:
        if name not in fields:
            present = ", ".join(repr(key) for key in fields) or "none"
            raise DataFileError(
                path,
                f"{row.subject} is missing input field {name!r} (fields: {present})",
                line=row.line,
            )
        value = fields[name]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataFileError(
                path, f"{row.subject} has an empty value for input field {name!r}", line=row.line
            )


def _split_from_column(path: Path, row: Row) -> str | None:
    value = row.fields.get(SPLIT_COLUMN)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None  # an empty split cell means "split me by hash", as if the column were absent
    name = value.strip().lower() if isinstance(value, str) else None
    if name not in SPLITS:
        raise DataFileError(
            path,
            f"{row.subject} has split {value!r}; use 'train', 'val' or 'test', "
            "or leave it empty to split by hash",
            line=row.line,
        )
    return name


def _split_from_hash(example_id: str, ratios: tuple[float, float, float]) -> str:
    # The first 64 bits of the id's hash as a number in [0, 1): the same example always lands in
    # the same split, whatever else is in the file and whatever its labels say.
    position = int(digest(example_id)[:16], 16) / 2**64
    train, val, test = ratios
    if position < train:
        return "train"
    if position < train + val:
        return "val"
    if test > 0:
        return "test"
    # Ratios that sum to 1 within rounding can leave a sliver above train + val; test has no share.
    return "val" if val > 0 else "train"


def _check_split_names(names: Sequence[str]) -> None:
    for name in names:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use 'train', 'val' or 'test'")
