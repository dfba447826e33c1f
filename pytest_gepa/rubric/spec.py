"""The rubric file format: a pydantic spec, and every mistake reported with its file and line.

A rubric file is YAML with ``name``, ``criteria`` (each ``name``, ``description``, optional
``weight``), optional ``pass_threshold``, ``judge_lm`` and the field roles ``inputs``,
``references`` and ``outputs``. :func:`read_rubric_spec` reads and validates one; what is wrong
comes back as one ``RubricError`` listing every problem as ``file:line: field: expected ...``.

Only pydantic loads with this module; PyYAML when a file is read.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from pytest_gepa.errors import RubricError

__all__ = [
    "DEFAULT_PASS_THRESHOLD",
    "ROLES",
    "Criterion",
    "CriterionSpec",
    "RubricSpec",
    "looks_numeric",
    "read_rubric_spec",
    "show_value",
]

DEFAULT_PASS_THRESHOLD = 0.5

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class CriterionSpec(BaseModel):
    """One criterion as the file writes it."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: _Text
    description: _Text
    weight: float = Field(default=1.0, gt=0)


class RubricSpec(BaseModel):
    """A whole rubric file, validated (strict: ``weight: '2'`` is a mistake, not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: _Text
    criteria: list[CriterionSpec] = Field(min_length=1)
    pass_threshold: float = Field(default=DEFAULT_PASS_THRESHOLD, ge=0, le=1)
    judge_lm: _Text | None = None
    inputs: list[_Text] | None = None
    references: list[_Text] | None = None
    outputs: list[_Text] | None = None


@dataclass(frozen=True)
class Criterion:
    """One criterion of a rubric: what the judge checks, and its weight in the rubric's score."""

    name: str
    description: str
    weight: float = 1.0


ROLES = ("inputs", "references", "outputs")
_CRITERION_SHAPE = "a mapping with 'name' and 'description' (and optionally 'weight')"
_EXPECTED: dict[tuple[str, ...], str] = {
    (): "a mapping with 'name' and 'criteria'",
    ("name",): "a non-empty string naming the rubric",
    ("criteria",): f"a non-empty list of criteria, each {_CRITERION_SHAPE}",
    ("criteria", "[]"): _CRITERION_SHAPE,
    ("criteria", "[]", "name"): "a non-empty string naming the criterion",
    ("criteria", "[]", "description"): "a non-empty string saying what the judge checks",
    ("criteria", "[]", "weight"): "a number > 0 (default 1)",
    ("pass_threshold",): "a number from 0 to 1 (default 0.5)",
    ("judge_lm",): "a litellm model string such as 'openai/gpt-4o-mini'",
    **{(role,): f"a list of field names, like [{example}]"
       for role, example in zip(ROLES, ("question", "answer", "answer"), strict=True)},
    **{(role, "[]"): "a non-empty field name" for role in ROLES},
}
_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    (): tuple(RubricSpec.model_fields),
    ("criteria", "[]"): tuple(CriterionSpec.model_fields),
}

_EXAMPLE = """\
    name: support_answer
    criteria:
      - name: correct
        description: The answer agrees with the reference answer.
        weight: 2
      - name: concise
        description: The answer is at most three sentences."""


def read_rubric_spec(path: str | os.PathLike[str]) -> RubricSpec:
    """Read and validate a rubric file; every mistake is a ``RubricError`` naming file, line, field and fix."""
    path = Path(path)
    document, root = _read_yaml(path)
    return _validate(path, document, root)


def _read_yaml(path: Path) -> tuple[Any, Any]:
    from pytest_gepa.data.yaml_source import YamlSyntaxError, parse_yaml

    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise RubricError(f"{path}: rubric file not found (looked at {str(path.absolute())!r})") from None
    except IsADirectoryError:
        raise RubricError(f"{path}: is a directory, not a rubric file") from None
    except UnicodeDecodeError as exc:
        raise RubricError(f"{path}: not valid UTF-8 at byte {exc.start}; save it as UTF-8") from None
    except OSError as exc:
        raise RubricError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        root, document = parse_yaml(text)
    except YamlSyntaxError as exc:
        where = f"{path}:{exc.line}" if exc.line is not None else f"{path}"
        raise RubricError(f"{where}: invalid YAML: {exc.problem}") from None
    if document is None:
        raise RubricError(f"{path}: the rubric file is empty; expected {_EXPECTED[()]}, like\n{_EXAMPLE}")
    return document, root


_Location = tuple[str | int, ...]
_Problem = tuple[_Location, str]


def _validate(path: Path, document: Any, root: Any) -> RubricSpec:
    problems = _duplicate_keys(root, ())
    if not problems and isinstance(document, dict):
        try:
            spec = RubricSpec.model_validate(document)
        except ValidationError as exc:
            problems = [_describe(error) for error in exc.errors()]
        else:
            problems = _cross_checks(spec)
    elif not problems:
        problems = [((), f"expected {_EXPECTED[()]} at the top level, got {_kind(document)}")]
    if not problems:
        return spec
    raise RubricError("\n".join(f"{_where(path, root, loc)}: {_subject(loc, text)}" for loc, text in problems))


def _describe(error: Any) -> _Problem:
    loc = tuple(error["loc"])
    kind, value = error["type"], error.get("input")
    expected = _EXPECTED.get(_shape(loc), "a valid value")
    if kind == "missing":
        return loc, f"is missing; expected {expected}"
    if kind == "extra_forbidden":
        known = _KEYS.get(_shape(loc[:-1]), ())
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return loc, f"is not a known key; expected one of {', '.join(known)}{hint}"
    got = f"got {show_value(value)}"
    if isinstance(value, str) and looks_numeric(value) and "number" in expected:
        got += " (text, not a number: PyYAML reads 1e-3 as text; write 0.001)"
    return loc, f"expected {expected}, {got}"


def _cross_checks(spec: RubricSpec) -> list[_Problem]:
    problems: list[_Problem] = []
    seen: dict[str, int] = {}
    for index, criterion in enumerate(spec.criteria):
        key = criterion.name.lower()  # the judge's reply is matched case-insensitively
        if key in seen:
            problems.append((("criteria", index, "name"), f"expected a name no other criterion has; "
                             f"{criterion.name!r} is also criteria[{seen[key]}].name"))
        seen.setdefault(key, index)
    owner: dict[str, str] = {}
    for role in ROLES:
        for index, name in enumerate(getattr(spec, role) or ()):
            if name in owner:
                where = "earlier in this list" if owner[name] == role else f"in {owner[name]}"
                problems.append(((role, index), f"expected each field in one place only; {name!r} is "
                                 f"already {where}"))
            owner.setdefault(name, role)
    return problems


def _duplicate_keys(node: Any, loc: _Location) -> list[_Problem]:
    # safe_load keeps the last of repeated keys without a word; a lost criterion is a silent change.
    import yaml

    problems: list[_Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            if key.value in seen:
                problems.append(((*loc, key.value), "appears twice; keep one"))
            seen.add(key.value)
            problems.extend(_duplicate_keys(value, (*loc, key.value)))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems.extend(_duplicate_keys(item, (*loc, index)))
    return problems


def _where(path: Path, root: Any, loc: _Location) -> str:
    """``path:line`` of the YAML node at ``loc`` (its nearest existing parent for a missing key)."""
    import yaml

    node = root
    for depth, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            # The last match: a repeated key is reported at its second occurrence.
            found = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)]
            if not found:
                break
            key, node = found[-1]
            if depth == len(loc) - 1:
                node = key  # the line a person looks for is the key's
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return f"{path}:{node.start_mark.line + 1}" if node is not None else f"{path}"


def _shape(loc: _Location) -> tuple[str, ...]:
    return tuple("[]" if isinstance(part, int) else str(part) for part in loc)


def _subject(loc: _Location, text: str) -> str:
    """``criteria[1].weight: expected ...`` or, for a sentence about the key itself, ``name is missing``."""
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    if not field:
        return text
    return f"{field} {text}" if text.startswith(("is ", "appears ")) else f"{field}: {text}"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list"}
    return names.get(type(value), f"a {type(value).__name__}")


def show_value(value: Any) -> str:
    """``repr(value)`` cut to 80 characters, for a message that quotes what it got."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def looks_numeric(text: str) -> bool:
    """Would ``float(text)`` read it? (PyYAML leaves ``1e-3`` as text; a human label may be ``'0.9'``.)"""
    try:
        float(text)
    except ValueError:
        return False
    return True
