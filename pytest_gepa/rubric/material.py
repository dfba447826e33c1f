"""What the judge sees: an example's and a prediction's fields sorted into inputs, references and outputs.

A rubric file may name the roles (``inputs:``, ``references:``, ``outputs:``); otherwise they
follow the example (its input keys are inputs, its other fields references) and the prediction
(its fields are outputs, ChainOfThought's ``reasoning`` left out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_gepa.canonical import digest, plain
from pytest_gepa.errors import RubricError

__all__ = ["FieldRoles", "Material", "fields_of", "input_keys", "jsonable"]

_NOT_OUTPUTS = ("reasoning",)  # ChainOfThought's scratchpad is not the answer being judged


@dataclass(frozen=True)
class Material:
    """What the judge sees, by role; its digest keys the verdict cache."""

    inputs: dict[str, Any]
    references: dict[str, Any]
    outputs: dict[str, Any]

    @property
    def digest(self) -> str:
        return digest(jsonable({"inputs": self.inputs, "references": self.references, "outputs": self.outputs}))


@dataclass(frozen=True)
class FieldRoles:
    """The field roles a rubric file declares (None: not declared), and where to point a mistake."""

    inputs: tuple[str, ...] | None
    references: tuple[str, ...] | None
    outputs: tuple[str, ...] | None
    where: str  # the rubric file, or the rubric's label when it has none

    def from_example(self, gold: Any, pred: Any) -> Material:
        """The material of a GEPA metric call: the gold example and the program's prediction."""
        gold_fields, pred_fields = fields_of(gold), fields_of(pred)
        input_names = self.inputs if self.inputs is not None else input_keys(gold, gold_fields)
        inputs = self._pick("inputs", gold_fields, input_names, what="example")
        if self.references is not None:
            references = {k: gold_fields[k] for k in self.references if k in gold_fields}
        else:
            references = {k: v for k, v in gold_fields.items() if k not in inputs}
        if self.outputs is not None:
            outputs = self._pick("outputs", pred_fields, self.outputs, what="prediction")
        else:
            outputs = {k: v for k, v in pred_fields.items() if k not in _NOT_OUTPUTS}
        return Material(inputs, references, outputs)

    def from_fields(self, fields: Mapping[str, Any], input_names: Sequence[str]) -> Material:
        """The material of ``evaluate(**fields)``: a name the rubric does not place is an output."""
        inputs, references, outputs = {}, {}, {}
        declared_inputs = set(self.inputs or ()) | set(input_names)
        for name, value in fields.items():
            if name in declared_inputs:
                inputs[name] = value
            elif name in (self.references or ()):
                references[name] = value
            else:
                outputs[name] = value  # declared outputs, and any name the rubric does not place
        for role, names in (("inputs", self.inputs), ("outputs", self.outputs)):
            self._pick(role, fields, names or (), what="evaluate()")
        return Material(inputs, references, outputs)

    def _pick(self, role: str, fields: Mapping[str, Any], names: Sequence[str], *, what: str) -> dict[str, Any]:
        missing = [name for name in names if name not in fields]
        if missing:
            have = ", ".join(repr(k) for k in fields) or "none"
            raise RubricError(
                f"{self.where}: {role} names field {missing[0]!r}, which the {what} does not have "
                f"(it has {have}); fix `{role}:` in the rubric file"
            )
        return {name: fields[name] for name in names}


def fields_of(obj: Any) -> dict[str, Any]:
    """The named fields of an Example, Prediction or mapping (dspy's internal ``dspy_`` keys left out)."""
    if isinstance(obj, Mapping) or hasattr(obj, "items"):
        return {str(k): v for k, v in obj.items() if not str(k).startswith("dspy_")}
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def input_keys(obj: Any, fields: Mapping[str, Any]) -> tuple[str, ...]:
    """The input field names a ``dspy.Example`` declares (``with_inputs``), among ``fields``."""
    keys = getattr(obj, "_input_keys", None)
    return tuple(k for k in keys if k in fields) if keys else ()


# The judge's prompt shows its material as the same JSON data the fingerprints hash.
jsonable = plain
