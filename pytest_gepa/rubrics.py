"""Judge rubrics: one YAML file that is GEPA's feedback metric, a gate's metric and an eval assertion.

A rubric file names criteria; a judge LM (a small DSPy program, :data:`JudgeSignature`) scores
each criterion in [0, 1] with a critique. The rubric's score is the weighted mean of those scores,
and its feedback the critiques of the criteria that fell short plus the reference answer, which is
what GEPA's reflection needs to write a better instruction. A judge reply that cannot be used is a
scored failure (score 0, saying why), never a crash; an LM transport error is not a score and
propagates.

The judge LM, at call time: ``dspy.settings.get("gepa_judge_lm")`` when set (the plugin sets it
while compiling and gating, so judge calls are metered and recorded like any other), else the
rubric file's ``judge_lm`` model, else the ``judge_lm`` callable given to :func:`load_rubric`.

pydantic and PyYAML load with this module; dspy only when a judge is first asked.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from pytest_gepa.errors import RubricError

if TYPE_CHECKING:
    import dspy

    from pytest_gepa.data import ExampleSet

__all__ = [
    "Agreement",
    "Criterion",
    "CriterionScore",
    "CriterionVerdict",
    "Disagreement",
    "JudgedCriterion",
    "Rubric",
    "Verdict",
    "cohen_kappa",
    "judge_signature",
    "load_rubric",
]

DEFAULT_PASS_THRESHOLD = 0.5
JUDGE_LM_RETRIES = 3
# Verdicts kept per rubric; GEPA re-asks for a prediction right after scoring it, so a few
# thousand recent ones are plenty and bound the memory of a long run.
_CACHE_SIZE = 4096
# Weighted means of exact scores can land a hair under the threshold (0.49999999999999994).
_PASS_TOLERANCE = 1e-9
# Bumped when the canonical form or the judge's prompt changes, so old fingerprints never match.
_FINGERPRINT_SCHEME = "pytest-gepa.rubric/1"
_NOT_OUTPUTS = ("reasoning",)  # ChainOfThought's scratchpad is not the answer being judged


# --- the judge program ---------------------------------------------------------------------------

JUDGE_INSTRUCTIONS = (
    "Grade a response against a rubric. For every criterion in `criteria`, give exactly one verdict: "
    "the criterion's name, a short critique, and a score from 0.0 (not met at all) to 1.0 (fully met). "
    "Judge each criterion only on what its description asks. `task_inputs` is what the response was "
    "asked; `reference` holds the reference answer when there is one (it is empty otherwise); `response` "
    "holds the fields being judged. When a criterion is not fully met, the critique says in one or two "
    "sentences what is wrong and what the reference answer says instead, so that whoever wrote the "
    "response can fix it."
)
_FIELD_DESCRIPTIONS = {
    "criteria": "the rubric's criteria, each with a name and what it checks",
    "task_inputs": "the inputs the response was produced from, by field name",
    "reference": "the reference (gold) answer by field name; empty when there is none",
    "response": "the response being judged, by field name",
    "verdicts": "one verdict per criterion, in the order of `criteria`",
}


class JudgedCriterion(BaseModel):
    """A criterion as the judge sees it (weights stay with the rubric)."""

    name: str
    description: str


class CriterionVerdict(BaseModel):
    """The judge's verdict on one criterion; the critique comes first so the score follows from it."""

    criterion: str
    critique: str
    score: float  # deliberately unconstrained: an out-of-range score is reported, not a parse error


@cache
def judge_signature() -> type[dspy.Signature]:
    """The judge's ``dspy.Signature`` (built on first use, so importing this module skips dspy)."""
    import dspy
    from dspy.signatures.signature import make_signature

    types = {"criteria": list[JudgedCriterion], "task_inputs": dict[str, Any], "reference": dict[str, Any],
             "response": dict[str, Any], "verdicts": list[CriterionVerdict]}
    fields = {}
    for name, annotation in types.items():
        kind = dspy.OutputField if name == "verdicts" else dspy.InputField
        fields[name] = (annotation, kind(desc=_FIELD_DESCRIPTIONS[name]))
    return make_signature(fields, JUDGE_INSTRUCTIONS, signature_name="JudgeSignature")


def __getattr__(name: str) -> Any:
    # `from pytest_gepa.rubrics import JudgeSignature` works without importing dspy up front.
    if name == "JudgeSignature":
        return judge_signature()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- the file format -----------------------------------------------------------------------------

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _CriterionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: _Text
    description: _Text
    weight: float = Field(default=1.0, gt=0)


class _RubricSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: _Text
    criteria: list[_CriterionSpec] = Field(min_length=1)
    pass_threshold: float = Field(default=DEFAULT_PASS_THRESHOLD, ge=0, le=1)
    judge_lm: _Text | None = None
    inputs: list[_Text] | None = None
    references: list[_Text] | None = None
    outputs: list[_Text] | None = None


_ROLES = ("inputs", "references", "outputs")
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
       for role, example in zip(_ROLES, ("question", "answer", "answer"), strict=True)},
    **{(role, "[]"): "a non-empty field name" for role in _ROLES},
}
_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    (): tuple(_RubricSpec.model_fields),
    ("criteria", "[]"): tuple(_CriterionSpec.model_fields),
}


@dataclass(frozen=True)
class Criterion:
    """One criterion of a rubric: what the judge checks, and its weight in the rubric's score."""

    name: str
    description: str
    weight: float = 1.0


def load_rubric(path: str | os.PathLike[str], *, judge_lm: Callable[[], Any] | None = None) -> Rubric:
    """Load and validate a rubric file; every mistake is a ``RubricError`` naming file, field and fix.

    ``judge_lm`` is a zero-argument callable yielding the judge ``dspy.LM``, called on the first
    judgement only; the file's own ``judge_lm`` model string wins over it.
    """
    path = Path(path)
    document, root = _read_yaml(path)
    spec = _validate(path, document, root)
    return Rubric(spec, path=path, judge_lm=judge_lm)


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


_EXAMPLE = """\
    name: support_answer
    criteria:
      - name: correct
        description: The answer agrees with the reference answer.
        weight: 2
      - name: concise
        description: The answer is at most three sentences."""


def _validate(path: Path, document: Any, root: Any) -> _RubricSpec:
    problems = _duplicate_keys(root, ())
    if not problems and isinstance(document, dict):
        try:
            spec = _RubricSpec.model_validate(document)
        except ValidationError as exc:
            problems = [_describe(error) for error in exc.errors()]
        else:
            problems = _cross_checks(spec)
    elif not problems:
        problems = [((), f"expected {_EXPECTED[()]} at the top level, got {_kind(document)}")]
    if not problems:
        return spec
    raise RubricError("\n".join(f"{_where(path, root, loc)}: {_subject(loc, text)}" for loc, text in problems))


_Problem = tuple[tuple[str | int, ...], str]


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
    got = f"got {_show(value)}"
    if isinstance(value, str) and _looks_numeric(value) and "number" in expected:
        got += " (text, not a number: PyYAML reads 1e-3 as text; write 0.001)"
    return loc, f"expected {expected}, {got}"


def _cross_checks(spec: _RubricSpec) -> list[_Problem]:
    problems: list[_Problem] = []
    seen: dict[str, int] = {}
    for index, criterion in enumerate(spec.criteria):
        key = criterion.name.lower()  # the judge's reply is matched case-insensitively
        if key in seen:
            problems.append((("criteria", index, "name"), f"expected a name no other criterion has; "
                             f"{criterion.name!r} is also criteria[{seen[key]}].name"))
        seen.setdefault(key, index)
    owner: dict[str, str] = {}
    for role in _ROLES:
        for index, name in enumerate(getattr(spec, role) or ()):
            if name in owner:
                where = "earlier in this list" if owner[name] == role else f"in {owner[name]}"
                problems.append(((role, index), f"expected each field in one place only; {name!r} is "
                                 f"already {where}"))
            owner.setdefault(name, role)
    return problems


def _duplicate_keys(node: Any, loc: tuple[str | int, ...]) -> list[_Problem]:
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


def _where(path: Path, root: Any, loc: tuple[str | int, ...]) -> str:
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


def _shape(loc: tuple[str | int, ...]) -> tuple[str, ...]:
    return tuple("[]" if isinstance(part, int) else str(part) for part in loc)


def _subject(loc: tuple[str | int, ...], text: str) -> str:
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


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- verdicts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CriterionScore:
    """The judge's score for one criterion, its weight in the rubric, and the critique."""

    name: str
    score: float
    weight: float
    critique: str


@dataclass(frozen=True)
class Verdict:
    """A rubric's judgement of one response; ``str(verdict)`` is the per-criterion table.

    ``judge_error`` says why the judge's reply could not be used (the score is then 0 and
    ``criteria`` is empty); None when the judge answered properly.
    """

    score: float
    passed: bool
    feedback: str
    criteria: tuple[CriterionScore, ...]
    judge_error: str | None = None

    def __str__(self) -> str:
        return self.feedback

    def __repr__(self) -> str:
        # Short, because pytest prints it under a failed `assert verdict.passed, verdict.feedback`.
        scores = ", ".join(f"{c.name}={c.score:.2f}" for c in self.criteria) or self.judge_error
        return f"Verdict(score={self.score:.2f}, passed={self.passed}, criteria: {scores})"


@dataclass(frozen=True)
class _Material:
    """What the judge sees, by role; its digest keys the verdict cache."""

    inputs: dict[str, Any]
    references: dict[str, Any]
    outputs: dict[str, Any]

    @property
    def digest(self) -> str:
        body = {"inputs": self.inputs, "references": self.references, "outputs": self.outputs}
        return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Judgement:
    verdict: Verdict
    advice: str  # the GEPA feedback: what fell short, and the reference answer


# --- agreement -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    """One labeled example on which the human verdict and the judge's differ."""

    id: str
    human: bool
    judge: bool
    score: float
    feedback: str


@dataclass(frozen=True)
class Agreement:
    """How far a rubric's pass/fail agrees with human verdicts.

    ``kappa`` is Cohen's kappa over pass/fail. It is None when it is undefined: both the humans
    and the judge gave every example the same label, so chance alone explains the agreement
    (expected agreement 1, kappa 0/0). Such a set cannot show whether the judge discriminates;
    add examples of the other label.
    """

    n: int
    agreement_rate: float
    kappa: float | None
    disagreements: tuple[Disagreement, ...]

    def __str__(self) -> str:
        kappa = "undefined (every example has the same label from both)" if self.kappa is None \
            else f"{self.kappa:.3f}"
        lines = [f"judge agrees with the human verdict on {self.n - len(self.disagreements)} of {self.n} "
                 f"examples ({self.agreement_rate:.0%}); Cohen's kappa {kappa}"]
        for d in self.disagreements:
            lines.append(f"  {d.id}: human {_pass_fail(d.human)}, judge {_pass_fail(d.judge)} "
                         f"({d.score:.2f}): {_one_line(d.feedback)}")
        return "\n".join(lines)


def cohen_kappa(human: Sequence[bool], judge: Sequence[bool]) -> float | None:
    """Cohen's kappa of two pass/fail raters; None when undefined (expected agreement 1)."""
    if len(human) != len(judge) or not human:
        raise ValueError(f"need two equally long, non-empty label lists, got {len(human)} and {len(judge)}")
    n = len(human)
    observed = sum(h == j for h, j in zip(human, judge, strict=True)) / n
    human_pass, judge_pass = sum(human) / n, sum(judge) / n
    expected = human_pass * judge_pass + (1 - human_pass) * (1 - judge_pass)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


# --- the rubric ----------------------------------------------------------------------------------


class Rubric:
    """A judge rubric: a GEPA feedback metric, a gate's metric, and ``evaluate(**fields)`` for asserts."""

    uses_judge = True

    def __init__(self, spec: _RubricSpec, *, path: Path | None = None,
                 judge_lm: Callable[[], Any] | None = None) -> None:
        self.name: str = spec.name
        self.path = path
        self.criteria: tuple[Criterion, ...] = tuple(
            Criterion(c.name, c.description, float(c.weight)) for c in spec.criteria
        )
        self.pass_threshold: float = float(spec.pass_threshold)
        self.judge_model: str | None = spec.judge_lm
        self.inputs: tuple[str, ...] | None = tuple(spec.inputs) if spec.inputs is not None else None
        self.references: tuple[str, ...] | None = tuple(spec.references) if spec.references is not None else None
        self.outputs: tuple[str, ...] | None = tuple(spec.outputs) if spec.outputs is not None else None
        self._judge_lm_factory = judge_lm
        self._own_lm: Any = None
        self._program: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, str], tuple[Any, _Judgement]] = OrderedDict()
        self._judge_errors = 0
        self.fingerprint: str = self._fingerprint()

    # -- identity ---------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        content = {
            "scheme": _FINGERPRINT_SCHEME,
            "name": self.name,
            "criteria": [[c.name, c.description, c.weight] for c in self.criteria],
            "pass_threshold": self.pass_threshold,
            "judge_lm": self.judge_model,
            "inputs": self.inputs,
            "references": self.references,
            "outputs": self.outputs,
            "judge": [JUDGE_INSTRUCTIONS, _FIELD_DESCRIPTIONS],
        }
        return hashlib.sha256(_canonical(content).encode("utf-8")).hexdigest()

    @property
    def label(self) -> str:
        return f"rubric {self.name!r}"

    @property
    def judge_errors(self) -> int:
        """How many judge replies could not be used (each scored 0), over this rubric's life."""
        with self._lock:
            return self._judge_errors

    @property
    def program(self) -> Any:
        """The judge as a DSPy program (``dspy.Predict(JudgeSignature)``)."""
        with self._lock:
            if self._program is None:
                import dspy

                self._program = dspy.Predict(judge_signature())
            return self._program

    def __repr__(self) -> str:
        where = f" from '{self.path}'" if self.path is not None else ""
        names = ", ".join(c.name for c in self.criteria)
        return f"<Rubric {self.name!r}{where}: {names}; pass at {self.pass_threshold:g}>"

    # -- the three uses ---------------------------------------------------------------------

    def __call__(self, gold: Any, pred: Any, trace: Any = None, pred_name: Any = None,
                 pred_trace: Any = None) -> dspy.Prediction:
        """GEPA's feedback metric: ``dspy.Prediction(score, feedback)``; the judge runs once per prediction."""
        import dspy

        judgement = self._judge(self._material_from_example(gold, pred))
        return dspy.Prediction(score=judgement.verdict.score, feedback=judgement.advice)

    def evaluate(self, /, **fields: Any) -> Verdict:
        """Judge named fields (inputs, outputs, references; unknown names are outputs) for a plain assert."""
        return self._judge(self._material_from_fields(fields, ())).verdict

    def agreement(self, labeled: ExampleSet | str | os.PathLike[str] | Iterable[Any], *,
                  verdict_field: str = "verdict", inputs: Sequence[str] | None = None,
                  threads: int = 1) -> Agreement:
        """How often this rubric's pass/fail agrees with human verdicts, with Cohen's kappa.

        ``labeled`` is an ``ExampleSet``, a path to an examples file, or any iterable of
        ``dspy.Example``s or mappings; each row holds a human verdict in ``verdict_field``
        (pass/fail, true/false, or a score in [0, 1] read against ``pass_threshold``) and the
        material fields, whose roles follow the rubric's field selection as in ``evaluate``.
        """
        rows, source = self._labeled_rows(labeled, verdict_field, inputs)
        if not rows:
            raise RubricError(f"{self.label}: no labeled examples to measure agreement on ({source})")
        humans = [self._human_verdict(row, verdict_field, source) for row in rows]

        def judge(row: _LabeledRow) -> _Judgement:
            fields = {k: v for k, v in row.fields.items() if k != verdict_field}
            return self._judge(self._material_from_fields(fields, row.inputs))

        self.judge_lm()  # resolved here, not first in a worker thread (a fixture callable wants this one)
        judgements: list[_Judgement] = _map(judge, rows, threads)
        judged = [j.verdict.passed for j in judgements]
        disagreements = tuple(
            Disagreement(row.id, human, j.verdict.passed, j.verdict.score, j.advice)
            for row, human, j in zip(rows, humans, judgements, strict=True) if human != j.verdict.passed
        )
        return Agreement(
            n=len(rows),
            agreement_rate=1 - len(disagreements) / len(rows),
            kappa=cohen_kappa(humans, judged),
            disagreements=disagreements,
        )

    # -- material ---------------------------------------------------------------------------

    def _material_from_example(self, gold: Any, pred: Any) -> _Material:
        gold_fields, pred_fields = _fields_of(gold), _fields_of(pred)
        input_names = self.inputs if self.inputs is not None else _input_keys(gold, gold_fields)
        inputs = self._pick("inputs", gold_fields, input_names, what="example")
        if self.references is not None:
            references = {k: gold_fields[k] for k in self.references if k in gold_fields}
        else:
            references = {k: v for k, v in gold_fields.items() if k not in inputs}
        if self.outputs is not None:
            outputs = self._pick("outputs", pred_fields, self.outputs, what="prediction")
        else:
            outputs = {k: v for k, v in pred_fields.items() if k not in _NOT_OUTPUTS}
        return _Material(inputs, references, outputs)

    def _material_from_fields(self, fields: Mapping[str, Any], input_names: Sequence[str]) -> _Material:
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
        return _Material(inputs, references, outputs)

    def _pick(self, role: str, fields: Mapping[str, Any], names: Sequence[str], *, what: str) -> dict[str, Any]:
        missing = [name for name in names if name not in fields]
        if missing:
            have = ", ".join(repr(k) for k in fields) or "none"
            raise RubricError(
                f"{self._where()}: {role} names field {missing[0]!r}, which the {what} does not have "
                f"(it has {have}); fix `{role}:` in the rubric file"
            )
        return {name: fields[name] for name in names}

    def _where(self) -> str:
        return f"{self.path}" if self.path is not None else self.label

    # -- judging ----------------------------------------------------------------------------

    def judge_lm(self) -> Any:
        """The LM that judges now: the context's ``gepa_judge_lm``, else the rubric's own LM."""
        import dspy

        lm = dspy.settings.get("gepa_judge_lm")
        return lm if lm is not None else self.own_judge_lm()

    def own_judge_lm(self) -> Any:
        """The rubric's LM outside the plugin's compile and gate: the file's model, else the callable's."""
        with self._lock:
            if self._own_lm is None:
                if self.judge_model is not None:
                    from pytest_gepa.lms import build_lm

                    self._own_lm = build_lm(self.judge_model, retries=JUDGE_LM_RETRIES)
                elif self._judge_lm_factory is not None:
                    self._own_lm = self._judge_lm_factory()
            if self._own_lm is None:
                raise RubricError(
                    f"{self._where()}: {self.label} has no judge LM; add `judge_lm: <litellm model>` to the "
                    "rubric file, pass judge_lm= to load_rubric, or use the gepa_rubric fixture (--gepa-judge-lm)"
                )
            return self._own_lm

    def _judge(self, material: _Material) -> _Judgement:
        lm = self.judge_lm()
        key = (id(lm), material.digest)  # a verdict is only as good as the LM that gave it
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit[1]
        judgement = self._ask(lm, material)
        with self._lock:
            # The LM is kept with its verdicts so that its id cannot be reused while they are cached.
            self._cache[key] = (lm, judgement)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            if judgement.verdict.judge_error is not None:
                self._judge_errors += 1
        return judgement

    def _ask(self, lm: Any, material: _Material) -> _Judgement:
        import dspy
        from dspy.utils.exceptions import AdapterParseError

        criteria = [JudgedCriterion(name=c.name, description=c.description) for c in self.criteria]
        try:
            # trace=None: the judge's calls must not enter the trace of the program being scored,
            # where GEPA or a bootstrapping optimizer would take them for the program's own.
            with dspy.context(lm=lm, trace=None):
                reply = self.program(criteria=criteria, task_inputs=_jsonable(material.inputs),
                                     reference=_jsonable(material.references),
                                     response=_jsonable(material.outputs))
        except AdapterParseError as exc:
            said = " ".join(str(exc.lm_response or "").split())
            said = said if len(said) <= 120 else said[:117] + "..."
            return self._unusable(f"it does not parse as a list of verdicts (the judge said {said!r})")
        scores = self._read_reply(getattr(reply, "verdicts", None))
        if isinstance(scores, str):
            return self._unusable(scores)
        return self._conclude(scores, material)

    def _read_reply(self, verdicts: Any) -> list[CriterionScore] | str:
        """Per-criterion scores from the judge's verdicts, or the reason they cannot be used."""
        if not isinstance(verdicts, list):
            return f"it holds {_show(verdicts)} where a list of verdicts belongs"
        by_name: dict[str, Any] = {}
        for verdict in verdicts:
            name = str(getattr(verdict, "criterion", "")).strip().lower()
            if name in by_name:
                return f"criterion {getattr(verdict, 'criterion', '')!r} has two verdicts"
            by_name[name] = verdict
        scores = []
        for criterion in self.criteria:
            verdict = by_name.get(criterion.name.lower())
            if verdict is None:
                return f"it has no verdict for criterion {criterion.name!r}"
            score = float(verdict.score)
            if not (math.isfinite(score) and 0.0 <= score <= 1.0):
                return f"criterion {criterion.name!r} scored {score:g}, outside [0, 1]"
            scores.append(CriterionScore(criterion.name, score, criterion.weight, str(verdict.critique).strip()))
        return scores

    def _unusable(self, problem: str) -> _Judgement:
        message = f"the judge's reply could not be used: {problem}"
        header = f"{self.label}: 0.00, FAIL: {message}"
        return _Judgement(Verdict(0.0, False, header, (), judge_error=message), message)

    def _conclude(self, scores: list[CriterionScore], material: _Material) -> _Judgement:
        total = sum(s.weight for s in scores)
        score = sum(s.score * s.weight for s in scores) / total
        passed = score >= self.pass_threshold - _PASS_TOLERANCE
        reference = _reference_text(material.references)
        short = [s for s in scores if s.score < 1.0]
        if short:
            advice = "\n".join(f"{s.name} ({s.score:.2f}): {s.critique}" for s in short)
            if reference:
                advice += f"\nReference answer: {reference}"
        else:
            advice = f"All criteria of {self.label} are met ({', '.join(s.name for s in scores)})."
        verb = "meets" if passed else "is below"
        lines = [f"{self.label}: {score:.2f}, {verb} the pass threshold {self.pass_threshold:.2f} "
                 f"({'PASS' if passed else 'FAIL'})", *_table(scores)]
        if reference:
            lines.append(f"Reference answer: {reference}")
        verdict = Verdict(score, passed, "\n".join(lines), tuple(scores))
        return _Judgement(verdict, advice)

    # -- labeled data -----------------------------------------------------------------------

    def _labeled_rows(self, labeled: Any, verdict_field: str,
                      inputs: Sequence[str] | None) -> tuple[list[_LabeledRow], str]:
        from pytest_gepa.data import ExampleSet, example_id, load_examples

        if isinstance(labeled, (str, os.PathLike)):
            input_names = list(inputs) if inputs is not None else list(self.inputs or ())
            if not input_names:
                raise RubricError(
                    f"{self.label}: agreement on {str(labeled)!r} needs the input fields: pass inputs=[...] "
                    "or declare `inputs:` in the rubric file"
                )
            labeled = load_examples(labeled, inputs=input_names)
        if isinstance(labeled, ExampleSet):
            ids, source = list(labeled.ids), str(labeled.path)
        else:
            labeled = list(labeled)
            ids, source = [], "the labeled examples"
        rows = []
        for index, item in enumerate(labeled):
            fields = _fields_of(item)
            row_inputs = tuple(inputs) if inputs is not None else _input_keys(item, fields)
            if index < len(ids):
                row_id = ids[index]
            elif hasattr(item, "toDict"):
                row_id = example_id(item)
            else:
                row_id = f"#{index}"
            rows.append(_LabeledRow(row_id, fields, row_inputs))
        return rows, source

    def _human_verdict(self, row: _LabeledRow, verdict_field: str, source: str) -> bool:
        if verdict_field not in row.fields:
            raise RubricError(f"{source}: example {row.id} has no {verdict_field!r} field with the human "
                              "verdict; add pass/fail, true/false or a score in [0, 1]")
        value = row.fields[verdict_field]
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("pass", "passed", "true", "yes"):
                return True
            if text in ("fail", "failed", "false", "no"):
                return False
            value = float(text) if _looks_numeric(text) else value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
            return bool(value >= self.pass_threshold - _PASS_TOLERANCE)
        raise RubricError(f"{source}: example {row.id} has {verdict_field}={row.fields[verdict_field]!r}; "
                          "expected pass/fail, true/false, or a score in [0, 1]")


@dataclass(frozen=True)
class _LabeledRow:
    id: str
    fields: dict[str, Any]
    inputs: tuple[str, ...]


# --- helpers -------------------------------------------------------------------------------------


def _fields_of(obj: Any) -> dict[str, Any]:
    """The named fields of an Example, Prediction or mapping (dspy's internal ``dspy_`` keys left out)."""
    if isinstance(obj, Mapping) or hasattr(obj, "items"):
        return {str(k): v for k, v in obj.items() if not str(k).startswith("dspy_")}
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def _input_keys(obj: Any, fields: Mapping[str, Any]) -> tuple[str, ...]:
    keys = getattr(obj, "_input_keys", None)
    return tuple(k for k in keys if k in fields) if keys else ()


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _canonical(value: Any) -> str:
    return json.dumps(_jsonable(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(_jsonable(value), ensure_ascii=False)


def _reference_text(references: Mapping[str, Any]) -> str:
    if not references:
        return ""
    if len(references) == 1:
        return _text(next(iter(references.values())))
    return "; ".join(f"{name}: {_text(value)}" for name, value in references.items())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _pass_fail(value: bool) -> str:
    return "pass" if value else "fail"


def _table(scores: Sequence[CriterionScore]) -> list[str]:
    width = max(len("criterion"), *(len(s.name) for s in scores))
    lines = [f"{'criterion':<{width}}  score  weight  critique"]
    for s in scores:
        mark = "" if s.score >= 1.0 else " <"
        lines.append(f"{s.name:<{width}}  {s.score:5.2f}  {s.weight:6g}  {_one_line(s.critique)}{mark}")
    return lines


def _map(function: Callable[[Any], Any], items: Sequence[Any], threads: int) -> list[Any]:
    if threads <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    import contextvars

    # dspy keeps its settings in context variables: each worker runs in a copy of ours.
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(lambda item: context.copy().run(function, item), items))
