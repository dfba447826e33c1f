"""The ``Rubric``: one YAML file that is GEPA's feedback metric, a gate's metric and an eval assertion.

A judge LM (a small DSPy program, :func:`judge_signature`) scores each criterion in [0, 1] with
a critique. The rubric's score is the weighted mean of those scores, and its feedback the
critiques of the criteria that fell short plus the reference answer, which is what GEPA's
reflection needs to write a better instruction. A judge reply that cannot be used is a scored
failure (score 0, saying why), never a crash; an LM transport error is not a score and propagates.

Which LM judges, at call time, is chosen apart from how its calls are wrapped:

* chosen: the rubric file's ``judge_lm`` model when it names one; else the plugin's judge,
  ``dspy.settings.get("gepa_judge_lm")``, which the plugin sets while compiling and gating; else
  the ``judge_lm`` callable given to :func:`load_rubric` (the ``gepa_rubric`` fixture gives
  ``gepa_judge_lm``: ``--gepa-judge-lm``, else the task LM);
* wrapped: whichever LM was chosen goes through ``dspy.settings.get("gepa_wrap_lm")`` when set,
  else the ``wrap_lm`` given to :func:`load_rubric`; the plugin uses it to meter every judge call
  and route it through a cassette, whichever model answers.

pydantic loads with this module; dspy only when a judge is first asked.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from pytest_gepa import canonical
from pytest_gepa.errors import RubricError, one_line
from pytest_gepa.rubric import agreement as _agreement
from pytest_gepa.rubric.agreement import Agreement, LabeledRow
from pytest_gepa.rubric.material import FieldRoles, Material, jsonable
from pytest_gepa.rubric.spec import Criterion, RubricSpec, read_rubric_spec
from pytest_gepa.rubric.verdict import Judgement, Verdict, conclude, read_reply, unusable

if TYPE_CHECKING:
    import dspy

    from pytest_gepa.data import ExampleSet

__all__ = [
    "JUDGE_INSTRUCTIONS",
    "CriterionVerdict",
    "JudgedCriterion",
    "Rubric",
    "judge_signature",
    "load_rubric",
]

JUDGE_LM_RETRIES = 3
# Verdicts kept per rubric; GEPA re-asks for a prediction right after scoring it, so a few
# thousand recent ones are plenty and bound the memory of a long run.
_CACHE_SIZE = 4096
# Wrapped judge LMs kept per rubric: one per target of a run is the usual need.
_WRAPPED_SIZE = 64
# Bumped when the canonical form or the judge's prompt changes, so old fingerprints never match.
_FINGERPRINT_SCHEME = "pytest-gepa.rubric/1"


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
    signature: type[dspy.Signature] = make_signature(fields, JUDGE_INSTRUCTIONS, signature_name="JudgeSignature")
    return signature


def __getattr__(name: str) -> Any:
    # `from pytest_gepa.rubric.judge import JudgeSignature` works without importing dspy up front.
    if name == "JudgeSignature":
        return judge_signature()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- the rubric ----------------------------------------------------------------------------------


def load_rubric(path: str | os.PathLike[str], *, judge_lm: Callable[[], Any] | None = None,
                wrap_lm: Callable[[Any], Any] | None = None) -> Rubric:
    """Load and validate a rubric file; every mistake is a ``RubricError`` naming file, field and fix.

    ``judge_lm`` is a zero-argument callable giving the default judge ``dspy.LM``, asked on the
    first judgement that needs it: the file's own ``judge_lm`` model wins over it. ``wrap_lm(lm)``
    returns the LM to call in place of the chosen one (to meter or record it); the plugin's
    ``gepa_wrap_lm`` in the dspy context wins over it.
    """
    path = Path(path)
    return Rubric(read_rubric_spec(path), path=path, judge_lm=judge_lm, wrap_lm=wrap_lm)


class Rubric:
    """A judge rubric: a GEPA feedback metric, a gate's metric, and ``evaluate(**fields)`` for asserts."""

    uses_judge = True

    def __init__(self, spec: RubricSpec, *, path: Path | None = None,
                 judge_lm: Callable[[], Any] | None = None, wrap_lm: Callable[[Any], Any] | None = None) -> None:
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
        self._roles = FieldRoles(self.inputs, self.references, self.outputs,
                                 where=f"{path}" if path is not None else self.label)
        self._default_judge = judge_lm
        self._wrap_lm = wrap_lm
        self._file_lm: Any = None
        self._default_lm: Any = None
        # (wrap, chosen LM, wrapped LM) by the ids of the first two, so each LM is wrapped once per
        # wrap callable and keeps its cached verdicts; holding both keeps their ids from being reused.
        self._wrapped: OrderedDict[tuple[int, int], tuple[Any, Any, Any]] = OrderedDict()
        self._program: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, str], tuple[Any, Judgement]] = OrderedDict()
        self._judge_errors = 0
        self.fingerprint: str = self._fingerprint()

    # -- identity ---------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        return canonical.digest({
            "scheme": _FINGERPRINT_SCHEME,
            "name": self.name,
            "criteria": [[c.name, c.description, c.weight] for c in self.criteria],
            "pass_threshold": self.pass_threshold,
            "judge_lm": self.judge_model,
            "inputs": self.inputs,
            "references": self.references,
            "outputs": self.outputs,
            "judge": [JUDGE_INSTRUCTIONS, _FIELD_DESCRIPTIONS],
        })

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

        judgement = self._judge(self._roles.from_example(gold, pred))
        return dspy.Prediction(score=judgement.verdict.score, feedback=judgement.advice)

    def evaluate(self, /, **fields: Any) -> Verdict:
        """Judge named fields (inputs, outputs, references; unknown names are outputs) for a plain assert."""
        return self._judge(self._roles.from_fields(fields, ())).verdict

    def agreement(self, labeled: ExampleSet | str | os.PathLike[str] | Iterable[Any], *,
                  verdict_field: str = "verdict", inputs: Sequence[str] | None = None,
                  threads: int = 1) -> Agreement:
        """How often this rubric's pass/fail agrees with human verdicts, with Cohen's kappa.

        ``labeled`` is an ``ExampleSet``, a path to an examples file, or any iterable of
        ``dspy.Example``s or mappings; each row holds a human verdict in ``verdict_field``
        (pass/fail, true/false, or a score in [0, 1] read against ``pass_threshold``) and the
        material fields, whose roles follow the rubric's field selection as in ``evaluate``.
        """
        rows, source = _agreement.labeled_rows(labeled, inputs=inputs, declared_inputs=self.inputs,
                                               label=self.label)
        if not rows:
            raise RubricError(f"{self.label}: no labeled examples to measure agreement on ({source})")
        humans = [_agreement.human_verdict(row, verdict_field, source, pass_threshold=self.pass_threshold)
                  for row in rows]

        def judge(row: LabeledRow) -> tuple[bool, float, str]:
            fields = {k: v for k, v in row.fields.items() if k != verdict_field}
            judgement = self._judge(self._roles.from_fields(fields, row.inputs))
            return judgement.verdict.passed, judgement.verdict.score, judgement.advice

        self.judge_lm()  # resolved here, not first in a worker thread (a fixture callable wants this one)
        return _agreement.summarize(rows, humans, _agreement.map_in_threads(judge, rows, threads))

    # -- choosing the judge -----------------------------------------------------------------

    def judge_lm(self) -> Any:
        """The LM to call for a judgement now: the chosen one (:meth:`chosen_judge_lm`), wrapped by the
        context's ``gepa_wrap_lm``, else by this rubric's ``wrap_lm``, else as it is."""
        import dspy

        lm = self.chosen_judge_lm()
        wrap = dspy.settings.get("gepa_wrap_lm") or self._wrap_lm
        return lm if wrap is None else self._wrapped_by(wrap, lm)

    def chosen_judge_lm(self) -> Any:
        """The model that judges: the file's ``judge_lm``, else the context's ``gepa_judge_lm``, else
        the ``judge_lm`` callable's."""
        import dspy

        if self.judge_model is not None:
            with self._lock:
                if self._file_lm is None:
                    from pytest_gepa.role_lms import build_lm

                    self._file_lm = build_lm(self.judge_model, retries=JUDGE_LM_RETRIES)
                return self._file_lm
        lm = dspy.settings.get("gepa_judge_lm")
        if lm is not None:
            return lm
        with self._lock:
            if self._default_lm is None and self._default_judge is not None:
                self._default_lm = self._default_judge()
            if self._default_lm is None:
                raise RubricError(
                    f"{self._roles.where}: {self.label} has no judge LM; add `judge_lm: <litellm model>` to the "
                    "rubric file, pass judge_lm= to load_rubric, or use the gepa_rubric fixture (--gepa-judge-lm)"
                )
            return self._default_lm

    def _wrapped_by(self, wrap: Callable[[Any], Any], lm: Any) -> Any:
        key = (id(wrap), id(lm))
        with self._lock:
            hit = self._wrapped.get(key)
            if hit is not None:
                self._wrapped.move_to_end(key)
                return hit[2]
        wrapped = wrap(lm)  # outside the lock: the plugin's wrap may take its own locks
        with self._lock:
            _, _, wrapped = self._wrapped.setdefault(key, (wrap, lm, wrapped))
            while len(self._wrapped) > _WRAPPED_SIZE:
                self._wrapped.popitem(last=False)
        return wrapped

    # -- judging ----------------------------------------------------------------------------

    def _judge(self, material: Material) -> Judgement:
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

    def _ask(self, lm: Any, material: Material) -> Judgement:
        import dspy
        from dspy.utils.exceptions import AdapterParseError

        criteria = [JudgedCriterion(name=c.name, description=c.description) for c in self.criteria]
        try:
            # trace=None: the judge's calls must not enter the trace of the program being scored,
            # where GEPA or a bootstrapping optimizer would take them for the program's own.
            with dspy.context(lm=lm, trace=None):
                reply = self.program(criteria=criteria, task_inputs=jsonable(material.inputs),
                                     reference=jsonable(material.references),
                                     response=jsonable(material.outputs))
        except AdapterParseError as exc:
            said = one_line(str(exc.lm_response or ""), 120)
            return unusable(self.label, f"it does not parse as a list of verdicts (the judge said {said!r})")
        scores = read_reply(getattr(reply, "verdicts", None), self.criteria)
        if isinstance(scores, str):
            return unusable(self.label, scores)
        return conclude(scores, material.references, label=self.label, pass_threshold=self.pass_threshold)
