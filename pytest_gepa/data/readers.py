"""Rows of ``.jsonl``, ``.json``, ``.csv`` and ``.yaml`` files, each with the line it came from.

Readers know formats, not examples: they return raw field mappings and where each came from, and
every problem with the text is a ``DataFileError`` naming the file and the line or element at
fault. What a row means (inputs, ids, splits) is decided in :mod:`pytest_gepa.data.examples`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_gepa.errors import DataFileError

SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".yaml", ".yml")
"""The file suffixes ``read_rows`` reads."""


@dataclass(frozen=True)
class Row:
    """One raw row and where it came from: a 1-based file line, or an element index for ``.json``."""

    fields: dict[str, Any]
    line: int | None = None
    index: int | None = None

    @property
    def where(self) -> str:
        """'line 7', or 'examples[3]' for a ``.json`` element: how a message that names two rows says it."""
        return f"line {self.line}" if self.index is None else f"examples[{self.index}]"

    @property
    def subject(self) -> str:
        """The row as the subject of a message whose ``path:line:`` prefix already says where."""
        # A .json element has no line, so it names itself.
        return "row" if self.index is None else f"examples[{self.index}]"


def read_rows(path: Path) -> list[Row]:
    """Every row of a ``.jsonl`` / ``.json`` / ``.csv`` / ``.yaml`` file, or ``DataFileError`` at the fault."""
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


def kind_of(value: object) -> str:
    """A value's kind as a message says it: 'a string', 'a list', 'null'."""
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


def _rows_from_jsonl(path: Path, text: str) -> list[Row]:
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
            raise DataFileError(path, f"row is {kind_of(value)}, not a JSON object", line=number)
        rows.append(Row(value, line=number))
    return rows


def _rows_from_json(path: Path, text: str) -> list[Row]:
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
            raise DataFileError(path, f"examples[{index}] is {kind_of(item)}, not a JSON object")
        rows.append(Row(item, index=index))
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
            raise DataFileError(path, f"'examples' must be a list, found {kind_of(items)}")
        return items
    raise DataFileError(path, f"expected {expected}; found {kind_of(document)}")


def _rows_from_csv(path: Path, text: str) -> list[Row]:
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
        rows.append(Row(dict(zip(header, record, strict=True)), line=line))
    return rows


def _rows_from_yaml(path: Path, text: str) -> list[Row]:
    import yaml

    from pytest_gepa.data.yaml_source import YamlSyntaxError, parse_yaml

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
            raise DataFileError(path, f"row is {kind_of(item)}, not a mapping of field: value", line=line)
        if isinstance(node, yaml.MappingNode):
            _check_yaml_keys(path, node)
        rows.append(Row(item, line=line))
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
