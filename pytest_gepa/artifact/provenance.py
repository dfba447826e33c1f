"""What the artifact remembers about where it came from, and how to tell what changed since.

A program's *shape* is what the artifact must still fit and what the user wrote by hand: each
predictor's input and output fields, its seed instruction (the signature's docstring) and each
field's description and type. GEPA rewrites instructions, so the shape is taken from the program
as the test builds it, before the artifact is loaded into it.
"""

from __future__ import annotations

import typing
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pytest_gepa import __version__
from pytest_gepa.artifact.model import Shape
from pytest_gepa.canonical import digest
from pytest_gepa.errors import one_line


def type_name(annotation: Any) -> str:
    """A field type as a reader writes it: ``str``, ``list[str]``, ``Literal['a', 'b']``."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def shape(program: Any) -> dict[str, Shape]:
    """Each predictor's fields, seed instruction, and field descriptions and types."""
    shapes = {}
    for name, predictor in program.named_predictors():
        signature = predictor.signature
        fields = {}
        for field_name, info in signature.fields.items():
            extra = info.json_schema_extra or {}
            desc = str(extra.get("desc", ""))
            # dspy fills an undescribed field with "${name}": that is no description a user wrote.
            fields[field_name] = {"desc": "" if desc == f"${{{field_name}}}" else desc,
                                  "type": type_name(info.annotation)}
        shapes[name] = Shape(inputs=list(signature.input_fields), outputs=list(signature.output_fields),
                             instructions=str(signature.instructions), fields=fields)
    return shapes


def program_fingerprint(shapes: dict[str, Shape]) -> str:
    return digest({name: s.model_dump() for name, s in shapes.items()}, length=16)


def shape_changes(recorded: dict[str, Shape], now: dict[str, Shape]) -> list[str]:
    """Sentences naming each predictor, field, seed instruction, description or type changed."""
    changes = []
    for name in sorted(recorded.keys() - now.keys()):
        changes.append(f"predictor {name!r} is gone (renamed or removed)")
    for name in sorted(now.keys() - recorded.keys()):
        changes.append(f"predictor {name!r} is new")
    for name in sorted(recorded.keys() & now.keys()):
        before, after = recorded[name], now[name]
        for side in ("inputs", "outputs"):
            if getattr(before, side) != getattr(after, side):
                changes.append(f"predictor {name!r} {side} changed from {getattr(before, side)} to "
                               f"{getattr(after, side)}")
        if before.instructions != after.instructions:
            old_text, new_text = _around_first_difference(before.instructions, after.instructions)
            changes.append(f"predictor {name!r} seed instruction (the signature's docstring) changed from "
                           f"{old_text!r} to {new_text!r}")
        for field_name in sorted(before.fields.keys() & after.fields.keys()):
            old, new = before.fields[field_name], after.fields[field_name]
            if old.get("desc") != new.get("desc"):
                changes.append(f"field {field_name!r} of {name!r}: description changed from {old.get('desc')!r} "
                               f"to {new.get('desc')!r}")
            if old.get("type") != new.get("type"):
                changes.append(f"field {field_name!r} of {name!r}: type changed from {old.get('type')} to "
                               f"{new.get('type')}")
    return changes


def _around_first_difference(before: str, after: str, width: int = 80) -> tuple[str, str]:
    """Both texts on one line, cut to ``width`` around where they first differ: two long
    docstrings differing near the end must not read as the same text twice."""
    before, after = one_line(before), one_line(after)
    if len(before) <= width and len(after) <= width:
        return before, after
    same = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b),
                min(len(before), len(after)))
    start = max(0, same - width // 2)

    def cut(text: str) -> str:
        piece = text[start:start + width]
        return ("..." if start else "") + piece + ("..." if start + width < len(text) else "")

    return cut(before), cut(after)


def installed_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str]:
    """The versions an artifact was compiled with (dspy's is checked again at every gate)."""
    return {"dspy": installed_version("dspy"), "gepa": installed_version("gepa"), "pytest-gepa": __version__}
