"""Labeled examples from ``.jsonl``, ``.json``, ``.csv`` and ``.yaml`` files, split into train/val/test.

Rows become ``dspy.Example``s. A row's split comes from its ``split`` column when it has one;
otherwise from a hash of its content, so adding rows never moves old rows between splits and a
compiled artifact's test scores stay comparable. Every problem with a file is a ``DataFileError``
naming the file and, where there is one, the line or element at fault.

dspy is imported inside the functions that build examples: importing this module stays cheap.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

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

SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".yaml", ".yml")
"""The file suffixes ``load_examples`` reads."""

# Bumped if the canonical form changes, so old and new fingerprints never compare equal by accident.
_FINGERPRINT_SCHEME = "pytest-gepa.examples/1"
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
    import dspy

    path = Path(path)
    input_names = _check_inputs(inputs)
    ratios = parse_ratios(split)
    rows = _read_rows(path)
    if not rows:
        raise DataFileError(path, "the file holds no examples; add at least one row")

    examples: list[dspy.Example] = []
    ids: list[str] = []
    assigned: list[str] = []
    labels: dict[str, None] = {}  # an ordered set: label names in first-seen order
    seen: dict[str, _Row] = {}
    canonical: list[list[str]] = []
    for row in rows:
        fields = {key: value for key, value in row.fields.items() if key != SPLIT_COLUMN}
        _check_row_fields(path, row, fields, input_names)
        digest = _content_hash(fields)
        if digest in seen:
            first = seen[digest]
            raise DataFileError(
                path,
                f"{first.where} and {row.where} hold the same example; remove one of them",
                line=row.line,
            )
        seen[digest] = row
        name = _split_from_column(path, row) or _split_from_hash(digest, ratios)
        # As the base mapping, not **fields: a field named "base" or "self" would clash with __init__.
        examples.append(dspy.Example(fields).with_inputs(*input_names))
        ids.append(digest[:12])
        assigned.append(name)
        labels.update((key, None) for key in fields if key not in input_names)
        canonical.append([digest, name])

    fingerprint = _sha256(
        _canonical_json({"scheme": _FINGERPRINT_SCHEME, "inputs": sorted(input_names), "examples": canonical})
    )
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


def example_id(example: dspy.Example) -> str:
    """A short stable id for any ``dspy.Example``: the first 12 hex digits of its content hash."""
    fields = {key: value for key, value in example.toDict().items() if not key.startswith("dspy_")}
    return _content_hash(fields)[:12]


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


# --- rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    """One raw row and where it came from: a 1-based file line, or an element index for ``.json``."""

    fields: dict[str, Any]
    line: int | None = None
    index: int | None = None

    @property
    def where(self) -> str:
        return f"line {self.line}" if self.index is None else f"examples[{self.index}]"

    @property
    def subject(self) -> str:
        # The line is already in the message's "path:line:" prefix; a .json element has no line.
        return "row" if self.index is None else f"examples[{self.index}]"


def _read_rows(path: Path) -> list[_Row]:
    suffix = path.suffix.lower()
    readers = {
        ".jsonl": _rows_from_jsonl,
        ".json": _rows_from_json,
        ".csv": _rows_from_csv,
        ".yaml": _rows_from_yaml,
        ".yml": _rows_from_yaml,
    }
    if suffix not in readers:
        kind = f"file type {suffix!r}" if suffix else "a file without a suffix"
        raise DataFileError(path, f"cannot read {kind}; use one of {', '.join(SUFFIXES)}")
    text = _read_text(path)
    if not text.strip():
        raise DataFileError(path, "the file is empty; add at least one example")
    return readers[suffix](path, text)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataFileError(path, f"file not found (looked at {str(path.absolute())!r})") from None
    except IsADirectoryError:
        raise DataFileError(path, "is a directory, not a data file") from None
    except OSError as exc:
        raise DataFileError(path, f"cannot be read: {exc.strerror or exc}") from None
    # A byte-order mark is what Excel and Notepad write; it is not part of the first field name.
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        line = data[:offset].count(b"\n") + 1
        raise DataFileError(path, f"not valid UTF-8 at byte {offset}; save it as UTF-8", line=line) from None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list"}
    return names.get(type(value), f"a {type(value).__name__}")


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of repeated keys without a word; a lost label is a silent wrong score.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _parse_json(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_object_without_duplicates)


def _rows_from_jsonl(path: Path, text: str) -> list[_Row]:
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = _parse_json(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=number) from None
        except _DuplicateKeyError as exc:
            raise DataFileError(
                path, f"the key {exc.key!r} appears twice in one object; keep one", line=number
            ) from None
        if not isinstance(value, dict):
            raise DataFileError(path, f"row is {_kind(value)}, not a JSON object", line=number)
        rows.append(_Row(value, line=number))
    return rows


def _rows_from_json(path: Path, text: str) -> list[_Row]:
    try:
        document = _parse_json(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None
    except _DuplicateKeyError as exc:
        raise DataFileError(path, f"the key {exc.key!r} appears twice in one object; keep one") from None
    items = _examples_list(path, document, "object")
    rows = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataFileError(path, f"examples[{index}] is {_kind(item)}, not a JSON object")
        rows.append(_Row(item, index=index))
    return rows


def _examples_list(path: Path, document: Any, mapping_word: str) -> list[Any]:
    """The rows of a ``.json`` / ``.yaml`` document: the list itself, or its ``examples`` list."""
    expected = f"a list of examples, or an {mapping_word} with an 'examples' list"
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        if "examples" not in document:
            keys = ", ".join(repr(key) for key in list(document)[:5])
            raise DataFileError(path, f"expected {expected}; found an {mapping_word} with keys {keys}")
        items = document["examples"]
        if not isinstance(items, list):
            raise DataFileError(path, f"'examples' must be a list, found {_kind(items)}")
        return items
    raise DataFileError(path, f"expected {expected}; found {_kind(document)}")


def _rows_from_csv(path: Path, text: str) -> list[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows = []
    # A quoted cell may span lines, so a record starts one line after the previous record ended.
    end_of_previous = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataFileError(path, f"invalid CSV: {exc}", line=end_of_previous + 1) from None
        line, end_of_previous = end_of_previous + 1, reader.line_num
        if not any(cell.strip() for cell in record):
            continue  # blank lines and the ",,," rows spreadsheets leave behind
        if header is None:
            header = [name.strip() for name in record]
            for column, name in enumerate(header, start=1):
                if not name:
                    raise DataFileError(path, f"header column {column} has no name", line=line)
                if header.index(name) != column - 1:
                    raise DataFileError(path, f"header names column {name!r} twice", line=line)
            continue
        if len(record) != len(header):
            raise DataFileError(
                path,
                f"row has {len(record)} cells but the header has {len(header)} columns",
                line=line,
            )
        rows.append(_Row(dict(zip(header, record, strict=True)), line=line))
    return rows


def _rows_from_yaml(path: Path, text: str) -> list[_Row]:
    import yaml

    from pytest_gepa.yaml_source import YamlSyntaxError, parse_yaml

    try:
        root, document = parse_yaml(text)
    except YamlSyntaxError as exc:
        raise DataFileError(path, f"invalid YAML: {exc.problem}", line=exc.line) from None

    if document is None:
        return []  # only comments: no examples, reported as such by the caller
    items = _examples_list(path, document, "mapping")
    item_nodes = _yaml_item_nodes(root)
    rows = []
    for index, item in enumerate(items):
        node = item_nodes[index] if index < len(item_nodes) else None
        line = node.start_mark.line + 1 if node is not None else None
        if not isinstance(item, dict):
            raise DataFileError(path, f"row is {_kind(item)}, not a mapping of field: value", line=line)
        if isinstance(node, yaml.MappingNode):
            _check_yaml_keys(path, node)
        rows.append(_Row(item, line=line))
    return rows


def _yaml_item_nodes(root: Any) -> list[Any]:
    import yaml

    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "examples":
                root = value
    return list(root.value) if isinstance(root, yaml.SequenceNode) else []


def _check_yaml_keys(path: Path, node: Any) -> None:
    # safe_load keeps the last of repeated keys without a word, as json does.
    import yaml

    seen: set[str] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if key.value in seen:
                raise DataFileError(
                    path,
                    f"the key {key.value!r} appears twice in one row; keep one",
                    line=key.start_mark.line + 1,
                )
            seen.add(key.value)


# --- checks and hashing -------------------------------------------------------------------------


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
    if len(set(names)) != len(names):
        raise ValueError(f"inputs= names a field twice: {list(names)!r}")
    return names


def _check_row_fields(path: Path, row: _Row, fields: dict[Any, Any], inputs: tuple[str, ...]) -> None:
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


def _split_from_column(path: Path, row: _Row) -> str | None:
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


def _split_from_hash(digest: str, ratios: tuple[float, float, float]) -> str:
    # The first 64 bits of the content hash as a number in [0, 1): the same row always lands in
    # the same split, whatever else is in the file.
    position = int(digest[:16], 16) / 2**64
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


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data, so equal content hashes the same from any file format."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # YAML dates and timestamps, and anything else an Example may hold


def _canonical_json(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _content_hash(fields: Mapping[str, Any]) -> str:
    return _sha256(_canonical_json(fields))
