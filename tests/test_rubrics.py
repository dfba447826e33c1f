"""Judge rubrics: the file format and its errors, verdicts in plain asserts, the GEPA metric, a judge
that misbehaves, agreement with human labels, and a real GEPA run driven by a rubric."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import dspy
import pytest
import world
from conftest import IN_PROCESS_LMS, TRIAGE_TEST
from dspy.utils.callback import BaseCallback
from dspy.utils.exceptions import LMError
from world import CONVENTIONS, INSTRUCTION, JudgeSkill, Prompt, Skill, Triage, World, triage_examples
from world.triage import expected_category

from pytest_gepa import role_lms as lms
from pytest_gepa.data import load_examples
from pytest_gepa.errors import RubricError
from pytest_gepa.evaluate import evaluate
from pytest_gepa.metrics import call_metric, metric_fingerprint
from pytest_gepa.rubric import Rubric, Verdict, cohen_kappa, judge_signature, load_rubric
from pytest_gepa.usage import UsageMeter

TRIAGE_RUBRIC = """\
name: triage
criteria:
  - name: correct_category
    description: The category matches the reference category.
    weight: 2
  - name: concise
    description: The answer is short.
"""

SUPPORT_RUBRIC = """\
name: support_answer
pass_threshold: 0.75
inputs: [question]
references: [gold_answer]
outputs: [answer]
criteria:
  - name: correct
    description: The answer gives the reference answer's fact.
    weight: 3
  - name: concise
    description: The answer is brief.
"""

DENT = "The parcel arrived today but the laptop lid has a big dent in it."


def write(tmp_path: Path, text: str, name: str = "rubric.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def judged_by(tmp_path: Path, text: str, judge: JudgeSkill | None = None, **lm_kwargs: Any) -> tuple[Rubric, World]:
    """A rubric from ``text`` whose judge is the scripted world (honest unless ``judge`` says)."""
    shared = World([judge or JudgeSkill()])
    lm = world.scripted_lm("judge", shared, **lm_kwargs)
    return load_rubric(write(tmp_path, text), judge_lm=lambda: lm), shared


def gold(category: str = "claims", ticket: str = DENT) -> dspy.Example:
    return dspy.Example(ticket=ticket, category=category).with_inputs("ticket")


def rubric_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(RubricError) as info:
        load_rubric(path)
    return str(info.value).replace(str(path), "rubric.yaml")


class Spy(Skill):
    """Records every judge prompt and answers none, so the real judge still does."""

    def __init__(self) -> None:
        self.prompts: list[Prompt] = []

    def matches(self, prompt: Prompt) -> bool:
        self.prompts.append(prompt)
        return False


# --------------------------------------------------------------------------- the file


def test_a_rubric_file_loads_with_its_defaults(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, TRIAGE_RUBRIC))
    assert rubric.name == "triage"
    assert [(c.name, c.weight) for c in rubric.criteria] == [("correct_category", 2.0), ("concise", 1.0)]
    assert rubric.criteria[0].description == "The category matches the reference category."
    assert (rubric.pass_threshold, rubric.judge_model) == (0.5, None)
    assert (rubric.inputs, rubric.references, rubric.outputs) == (None, None, None)
    assert rubric.uses_judge is True and rubric.judge_errors == 0
    assert repr(rubric) == f"<Rubric 'triage' from '{tmp_path / 'rubric.yaml'}': correct_category, concise; pass at 0.5>"

    support = load_rubric(write(tmp_path, SUPPORT_RUBRIC))
    assert (support.inputs, support.references, support.outputs) == (("question",), ("gold_answer",), ("answer",))
    assert support.pass_threshold == 0.75


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            """\
            name: t
            criteria:
              - name: a
                description: A
              - name: b
                description: B
                weight: -1
            """,
            "rubric.yaml:7: criteria[1].weight: expected a number > 0 (default 1), got -1",
            id="negative-weight",
        ),
        pytest.param(
            "name: t\ncriteria:\n  - name: a\n    description: A\n    weight: 1e-3\n",
            "rubric.yaml:5: criteria[0].weight: expected a number > 0 (default 1), got '1e-3' "
            "(text, not a number: PyYAML reads 1e-3 as text; write 0.001)",
            id="weight-as-text",
        ),
        pytest.param(
            "criteria:\n  - name: a\n    description: A\n",
            "rubric.yaml:1: name is missing; expected a non-empty string naming the rubric",
            id="no-name",
        ),
        pytest.param(
            "name: t\ncriteria: []\n",
            "rubric.yaml:2: criteria: expected a non-empty list of criteria, each a mapping with 'name' and "
            "'description' (and optionally 'weight'), got []",
            id="no-criteria",
        ),
        pytest.param(
            "name: t\ncriteria:\n  - be nice\n",
            "rubric.yaml:3: criteria[0]: expected a mapping with 'name' and 'description' (and optionally "
            "'weight'), got 'be nice'",
            id="criterion-not-a-mapping",
        ),
        pytest.param(
            "name: t\ncriteria:\n  - name: a\n    description: A\n    wieght: 2\n",
            "rubric.yaml:5: criteria[0].wieght is not a known key; expected one of name, description, weight; "
            "did you mean 'weight'?",
            id="unknown-criterion-key",
        ),
        pytest.param(
            "name: t\npass_treshold: 0.7\ncriteria:\n  - name: a\n    description: A\n",
            "rubric.yaml:2: pass_treshold is not a known key; expected one of name, criteria, pass_threshold, "
            "judge_lm, inputs, references, outputs; did you mean 'pass_threshold'?",
            id="unknown-key",
        ),
        pytest.param(
            "name: t\npass_threshold: 1.5\ncriteria:\n  - name: a\n    description: A\n",
            "rubric.yaml:2: pass_threshold: expected a number from 0 to 1 (default 0.5), got 1.5",
            id="threshold-above-one",
        ),
        pytest.param(
            "name: t\ncriteria:\n  - name: tone\n    description: A\n  - name: Tone\n    description: B\n",
            "rubric.yaml:5: criteria[1].name: expected a name no other criterion has; 'Tone' is also criteria[0].name",
            id="duplicate-criterion",
        ),
        pytest.param(
            "name: t\ninputs: question\ncriteria:\n  - name: a\n    description: A\n",
            "rubric.yaml:2: inputs: expected a list of field names, like [question], got 'question'",
            id="inputs-not-a-list",
        ),
        pytest.param(
            "name: t\ninputs: [question]\noutputs: [answer, question]\ncriteria:\n  - name: a\n    description: A\n",
            "rubric.yaml:3: outputs[1]: expected each field in one place only; 'question' is already in inputs",
            id="field-in-two-roles",
        ),
        pytest.param(
            "name: t\njudge_lm: ''\ncriteria:\n  - name: a\n    description: A\n",
            "rubric.yaml:2: judge_lm: expected a litellm model string such as 'openai/gpt-4o-mini', got ''",
            id="empty-judge-lm",
        ),
        pytest.param(
            "name: t\ncriteria:\n  - name: a\n    description: A\n    description: B\n",
            "rubric.yaml:5: criteria[0].description appears twice; keep one",
            id="duplicate-yaml-key",
        ),
        pytest.param(
            "name: t\ncriteria:\n  - name: a\n    description: [unclosed\n",
            "rubric.yaml:5: invalid YAML: while parsing a flow sequence (from line 4), expected ',' or ']', "
            "but got '<stream end>'",
            id="yaml-syntax",
        ),
        pytest.param(
            "- a\n- b\n",
            "rubric.yaml:1: expected a mapping with 'name' and 'criteria' at the top level, got a list",
            id="top-level-list",
        ),
    ],
)
def test_each_mistake_names_file_line_field_and_expectation(tmp_path: Path, text: str, message: str) -> None:
    assert rubric_error(tmp_path, textwrap.dedent(text)) == message


def test_every_mistake_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = "name: yes\ncriteria:\n  - name: a\n    description: ''\n    weight: true\n"
    assert rubric_error(tmp_path, text) == "\n".join([
        "rubric.yaml:1: name: expected a non-empty string naming the rubric, got True",
        "rubric.yaml:4: criteria[0].description: expected a non-empty string saying what the judge checks, got ''",
        "rubric.yaml:5: criteria[0].weight: expected a number > 0 (default 1), got True",
    ])


def test_an_empty_or_missing_file_says_what_a_rubric_looks_like(tmp_path: Path) -> None:
    message = rubric_error(tmp_path, "# only a comment\n")
    assert message.startswith("rubric.yaml: the rubric file is empty; expected a mapping with 'name' and 'criteria', like\n")
    assert "name: support_answer" in message and "weight: 2" in message
    with pytest.raises(RubricError, match=r"nope\.yaml: rubric file not found \(looked at '.*nope\.yaml'\)"):
        load_rubric(tmp_path / "nope.yaml")


def test_the_fingerprint_follows_content_not_formatting(tmp_path: Path) -> None:
    base = load_rubric(write(tmp_path, TRIAGE_RUBRIC)).fingerprint
    same = """\
    # the same rubric, reordered, with its defaults spelled out
    criteria:
      - {name: correct_category, description: The category matches the reference category., weight: 2.0}
      - {name: concise, description: The answer is short., weight: 1}
    pass_threshold: 0.5
    name: triage
    """
    assert load_rubric(write(tmp_path, same, "same.yaml")).fingerprint == base
    assert len(base) == 64 and int(base, 16) >= 0
    for change in (("weight: 2", "weight: 3"), ("is short.", "is brief."), ("name: triage", "name: triage2")):
        changed = write(tmp_path, TRIAGE_RUBRIC.replace(*change), "changed.yaml")
        assert load_rubric(changed).fingerprint != base, change
    assert metric_fingerprint(load_rubric(write(tmp_path, TRIAGE_RUBRIC))) == base


def test_importing_the_rubric_room_does_not_import_dspy() -> None:
    code = "import sys, pytest_gepa.rubric.judge; assert 'dspy' not in sys.modules, 'dspy was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- verdicts in asserts


def test_evaluate_gives_a_verdict_with_a_table_for_plain_asserts(tmp_path: Path) -> None:
    rubric, _ = judged_by(tmp_path, SUPPORT_RUBRIC)
    verdict = rubric.evaluate(question="How do I reset my password?", gold_answer="Settings",
                              answer="Open Settings and choose Reset password.")
    assert verdict.passed, verdict.feedback
    assert verdict.score == 1.0
    assert [(c.name, c.score, c.weight) for c in verdict.criteria] == [("correct", 1.0, 3.0), ("concise", 1.0, 1.0)]

    wrong = rubric.evaluate(question="How do I reset my password?", gold_answer="Settings",
                            answer="Call support. " * 25)
    assert isinstance(wrong, Verdict) and not wrong.passed
    assert wrong.score == pytest.approx((3 * 0.0 + 1 * 0.5) / 4)
    with pytest.raises(AssertionError) as failed:
        assert wrong.passed, wrong.feedback
    assert "rubric 'support_answer': 0.12, is below the pass threshold 0.75 (FAIL)" in str(failed.value)
    assert wrong.feedback.splitlines() == [
        "rubric 'support_answer': 0.12, is below the pass threshold 0.75 (FAIL)",
        "criterion  score  weight  critique",
        "correct     0.00       3  Expected the response to say 'Settings' (gold_answer); it does not. <",
        "concise     0.50       1  The response is 50 words long; keep it within 40 words. <",
        "Reference answer: Settings",
    ]
    assert str(wrong) == wrong.feedback
    assert repr(wrong) == "Verdict(score=0.12, passed=False, criteria: correct=0.00, concise=0.50)"


def test_the_judge_sees_each_field_in_the_role_the_rubric_gives_it(tmp_path: Path) -> None:
    spy = Spy()
    shared = World([spy, JudgeSkill()])
    rubric = load_rubric(write(tmp_path, SUPPORT_RUBRIC), judge_lm=lambda: world.scripted_lm("judge", shared))
    rubric.evaluate(question="Where is my parcel?", gold_answer="in transit", answer="It is in transit.",
                    tone="friendly")
    prompt = spy.prompts[0]
    assert json.loads(prompt.inputs["task_inputs"]) == {"question": "Where is my parcel?"}
    assert json.loads(prompt.inputs["reference"]) == {"gold_answer": "in transit"}
    # A name the rubric does not place is judged as an output.
    assert json.loads(prompt.inputs["response"]) == {"answer": "It is in transit.", "tone": "friendly"}
    assert [c["name"] for c in json.loads(prompt.inputs["criteria"])] == ["correct", "concise"]
    assert prompt.instruction == judge_signature().instructions
    assert prompt.output_names == ("verdicts",)

    with pytest.raises(RubricError, match=r"outputs names field 'answer', which the evaluate\(\) does not have "
                                          r"\(it has 'question', 'reply'\); fix `outputs:` in the rubric file"):
        rubric.evaluate(question="Where is my parcel?", reply="In transit.")


# --------------------------------------------------------------------------- the GEPA metric


def test_as_a_gepa_metric_it_returns_score_and_feedback_with_the_reference(tmp_path: Path) -> None:
    rubric, _ = judged_by(tmp_path, TRIAGE_RUBRIC)
    wrong = rubric(gold(), dspy.Prediction(reasoning="A dent is a delivery problem.", category="shipping"),
                   None, "predict", None)
    assert isinstance(wrong, dspy.Prediction)
    assert wrong.score == pytest.approx(1 / 3)
    assert wrong.feedback == (
        "correct_category (0.00): Expected 'claims' but the response gives 'shipping' for category.\n"
        "Reference answer: claims"
    )
    # The feedback names the expected category, which is what a reflection LM learns from.
    assert expected_category(wrong.feedback, "shipping") == "claims"

    right = rubric(gold(), dspy.Prediction(reasoning="...", category="claims"))
    assert (right.score, right.feedback) == (1.0, "All criteria of rubric 'triage' are met (correct_category, concise).")
    # The plugin's evaluation path reads it like any other metric.
    assert call_metric(rubric, gold(), dspy.Prediction(category="shipping")).score == pytest.approx(1 / 3)


def test_the_judge_runs_once_per_prediction(tmp_path: Path) -> None:
    rubric, shared = judged_by(tmp_path, TRIAGE_RUBRIC)
    first = rubric(gold(), dspy.Prediction(reasoning="dents are shipping", category="shipping"))
    # GEPA asks again for the same prediction while building its reflective dataset.
    again = rubric(gold(), dspy.Prediction(reasoning="dents are shipping", category="shipping"),
                   None, "predict", None)
    reworded = rubric(gold(), dspy.Prediction(reasoning="other words, same answer", category="shipping"))
    assert shared.calls["judge"] == 1
    assert first.feedback == again.feedback == reworded.feedback
    rubric(gold(), dspy.Prediction(category="claims"))
    assert shared.calls["judge"] == 2


@pytest.mark.parametrize("adapter", [dspy.ChatAdapter(), dspy.JSONAdapter()], ids=["chat", "json"])
def test_the_judge_answers_through_either_adapter(tmp_path: Path, adapter: dspy.Adapter) -> None:
    rubric, shared = judged_by(tmp_path, TRIAGE_RUBRIC)
    with dspy.context(adapter=adapter):
        result = rubric(gold(), dspy.Prediction(category="shipping"))
    assert result.score == pytest.approx(1 / 3) and shared.calls["judge"] == 1


def test_the_judge_does_not_enter_the_trace_of_the_program_being_scored(tmp_path: Path) -> None:
    rubric, _ = judged_by(tmp_path, TRIAGE_RUBRIC)
    with dspy.context(trace=[]):
        rubric(gold(), dspy.Prediction(category="shipping"))
        assert dspy.settings.trace == []


def test_the_judge_lm_is_the_files_model_else_the_context_else_the_callable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    session_world, context_world, file_world = World(), World(), World()

    def session_judge() -> dspy.LM:
        asked.append("session")
        return world.scripted_lm("judge", session_world)

    # Without a model in the file: the plugin's judge in its context, else the callable.
    rubric = load_rubric(write(tmp_path, TRIAGE_RUBRIC), judge_lm=session_judge)
    assert asked == []  # the LM is built on the first judgement, not at load
    rubric.evaluate(category="claims")
    with dspy.context(gepa_judge_lm=world.scripted_lm("judge", context_world)):
        rubric.evaluate(category="claims")
    rubric.evaluate(category="billing")
    assert asked == ["session"]
    assert (session_world.calls["judge"], context_world.calls["judge"]) == (2, 1)

    built: list[tuple[str, int]] = []

    def build_lm(model: str, *, retries: int, **_: Any) -> dspy.LM:
        built.append((model, retries))
        return world.scripted_lm("judge", file_world)

    # A model in the file wins over both, inside the plugin's context too (README: "default:
    # --gepa-judge-lm, else the task LM", so the flag is only the default).
    monkeypatch.setattr(lms, "build_lm", build_lm)
    own = load_rubric(write(tmp_path, "judge_lm: openai/gpt-4o-mini\n" + TRIAGE_RUBRIC, "own.yaml"),
                      judge_lm=session_judge)
    own.evaluate(category="claims")
    with dspy.context(gepa_judge_lm=world.scripted_lm("judge", context_world)):
        own.evaluate(category="billing")
        own(gold(), dspy.Prediction(category="shipping"))
    assert built == [("openai/gpt-4o-mini", 3)]
    assert (file_world.calls["judge"], context_world.calls["judge"], asked) == (3, 1, ["session"])


class SeenBy(BaseCallback):
    """Notes the model of every LM call it is attached to, under the name of whoever attached it."""

    def __init__(self, who: str, log: list[tuple[str, str]]) -> None:
        self.who, self.log = who, log

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.log.append((self.who, str(instance.model)))


def wrapper(who: str, log: list[tuple[str, str]], wrapped: list[str]) -> Any:
    """A ``wrap_lm`` as the plugin's: a copy of the LM that reports its calls (the engine is shared)."""

    def wrap(lm: dspy.LM) -> dspy.LM:
        wrapped.append(f"{who}:{lm.model}")
        copy = lm.copy()
        copy.callbacks = [*copy.callbacks, SeenBy(who, log)]
        return copy

    return wrap


def test_the_wrap_callable_sees_every_judge_call_whichever_lm_is_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_world, context_world = World(), World()
    monkeypatch.setattr(lms, "build_lm", lambda model, *, retries, **_: world.scripted_lm("judge", file_world))
    log: list[tuple[str, str]] = []
    wrapped: list[str] = []
    path = write(tmp_path, "judge_lm: openai/x-judge\n" + TRIAGE_RUBRIC)
    rubric = load_rubric(path, wrap_lm=wrapper("own", log, wrapped))
    plain = load_rubric(write(tmp_path, TRIAGE_RUBRIC, "plain.yaml"))

    rubric.evaluate(category="claims")
    plugin_wrap = wrapper("plugin", log, wrapped)
    with dspy.context(gepa_judge_lm=world.scripted_lm("judge", context_world), gepa_wrap_lm=plugin_wrap):
        rubric.evaluate(category="billing")
        rubric(gold(), dspy.Prediction(category="shipping"))
        rubric(gold(), dspy.Prediction(category="shipping"))  # the same prediction: judged once
        plain.evaluate(category="claims")
    # The context's wrap wins over the rubric's own; each chosen LM is wrapped once per wrap callable.
    assert wrapped == ["own:scripted/judge", "plugin:scripted/judge", "plugin:scripted/judge"]
    assert log == [("own", "scripted/judge"), *[("plugin", "scripted/judge")] * 3]
    assert (file_world.calls["judge"], context_world.calls["judge"]) == (3, 1)


# The conftest's in-process LMs without the judge (the rubric names its own), and its triage signature.
TASK_AND_REFLECTION_LMS = IN_PROCESS_LMS[: IN_PROCESS_LMS.index('@pytest.fixture(scope="session")\ndef gepa_judge_lm')]

JUDGED_TRIAGE_TEST = TRIAGE_TEST[: TRIAGE_TEST.index("def test_triage_prompt")] + '''
def test_triage_prompt(gepa, gepa_examples, gepa_rubric):
    data = gepa_examples("data/triage.jsonl", inputs=["ticket"])
    judge = gepa_rubric("rubrics/triage.yaml")
    program = gepa.compile(dspy.ChainOfThought(Triage), data, metric=judge)
    gepa.gate(program, data.test, metric=judge, min_score=0.5)

def test_live_reply(gepa_rubric):
    verdict = gepa_rubric("rubrics/triage.yaml").evaluate(ticket="I was charged twice.", category="billing")
    assert verdict.passed, verdict.feedback
'''


FLAG_JUDGE = ("--gepa-judge-lm", "openai/y-judge")


def judged_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, dict[str, World]]:
    """The triage project judged by a rubric file naming judge X, run with the flag naming judge Y;
    both models answer from the scripted world, each from its own, so their calls can be told apart."""
    from conftest import TriageProject

    worlds = {"openai/x-judge": World(), "openai/y-judge": World()}
    monkeypatch.setattr(lms, "build_lm", lambda model, *, retries, **_: world.scripted_lm("judge", worlds[model]))
    project = TriageProject(pytester, lms=TASK_AND_REFLECTION_LMS)
    project.write_test(source=JUDGED_TRIAGE_TEST)
    (project.root / "rubrics").mkdir()
    (project.root / "rubrics" / "triage.yaml").write_text("judge_lm: openai/x-judge\n" + CATEGORY_RUBRIC)
    return project, worlds


def test_a_rubric_files_judge_lm_answers_in_compile_gate_and_evaluate_over_the_flag(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, worlds = judged_project(pytester, monkeypatch)
    flag = FLAG_JUDGE

    def judge_calls() -> tuple[int, int]:
        return worlds["openai/x-judge"].calls["judge"], worlds["openai/y-judge"].calls["judge"]

    project.compile(*flag, "-k", "test_triage_prompt").assert_outcomes(passed=1)
    after_compile = judge_calls()
    assert after_compile[0] > 0 and after_compile[1] == 0, "compile asked the flag's judge"
    project.run(*flag, "-k", "test_triage_prompt").assert_outcomes(passed=1)
    after_gate = judge_calls()
    assert after_gate[0] > after_compile[0] and after_gate[1] == 0, "gate asked the flag's judge"
    project.run(*flag, "-k", "test_live_reply").assert_outcomes(passed=1)
    assert judge_calls() == (after_gate[0] + 1, 0), "evaluate() asked the flag's judge"


def test_a_rubric_files_judge_calls_are_recorded_and_replayed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, worlds = judged_project(pytester, monkeypatch)
    project.compile(*FLAG_JUDGE, "--gepa-record", "-k", "test_triage_prompt").assert_outcomes(passed=1)
    asked = worlds["openai/x-judge"].calls["judge"]
    assert asked > 0
    roles = {json.loads(line)["role"] for line in project.cassette.read_text().splitlines()}
    assert "judge" in roles, roles
    project.run(*FLAG_JUDGE, "--gepa-replay", "-k", "test_triage_prompt").assert_outcomes(passed=1)
    assert worlds["openai/x-judge"].calls["judge"] == asked, "a replayed gate asked the file's judge"


def test_without_any_judge_lm_the_rubric_says_how_to_get_one(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, TRIAGE_RUBRIC))
    with pytest.raises(RubricError, match=r"rubric 'triage' has no judge LM; add `judge_lm: <litellm model>` to "
                                          r"the rubric file, pass judge_lm= to load_rubric, or use the "
                                          r"gepa_rubric fixture \(--gepa-judge-lm\)"):
        rubric(gold(), dspy.Prediction(category="claims"))


# --------------------------------------------------------------------------- a judge that misbehaves


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        ("out_of_range", "criterion 'correct_category' scored 1.7, outside [0, 1]"),
        ("missing", "it has no verdict for criterion 'concise'"),
        ("garbage", "it does not parse as a list of verdicts (the judge said "
                    "'{\"verdicts\": \"Looks fine to me, I would give it a solid B+.\"}')"),
    ],
)
def test_an_unusable_judge_reply_scores_zero_and_says_why(tmp_path: Path, mode: Any, problem: str) -> None:
    text = TRIAGE_RUBRIC.replace("name: triage", "name: triage\npass_threshold: 0")
    rubric, _ = judged_by(tmp_path, text, JudgeSkill(mode))
    result = rubric(gold(), dspy.Prediction(category="claims"))
    assert (result.score, result.feedback) == (0.0, f"the judge's reply could not be used: {problem}")
    assert rubric.judge_errors == 1

    verdict = rubric.evaluate(ticket=DENT, category="billing")
    # Not a pass even at threshold 0: a reply that could not be read judged nothing.
    assert (verdict.score, verdict.passed, verdict.criteria) == (0.0, False, ())
    assert verdict.judge_error == f"the judge's reply could not be used: {problem}"
    assert verdict.feedback == f"rubric 'triage': 0.00, FAIL: the judge's reply could not be used: {problem}"
    assert rubric.judge_errors == 2


def test_judge_errors_are_counted_across_threads(tmp_path: Path) -> None:
    rubric, _ = judged_by(tmp_path, TRIAGE_RUBRIC, JudgeSkill("out_of_range"))
    examples = triage_examples(16)
    with dspy.context(lm=world.scripted_lm("task")):
        result = evaluate(dspy.Predict(Triage), examples, rubric, lm=None, threads=4)
    assert [r.score for r in result.results] == [0.0] * 16
    assert rubric.judge_errors == 16


def test_an_lm_transport_error_is_raised_not_scored(tmp_path: Path) -> None:
    rubric, shared = judged_by(tmp_path, TRIAGE_RUBRIC, JudgeSkill("unreachable"), num_retries=0)
    with pytest.raises(LMError, match="connection refused by the scripted judge"):
        rubric(gold(), dspy.Prediction(category="claims"))
    assert (rubric.judge_errors, shared.calls["judge"]) == (0, 1)
    # In the plugin's evaluation, where the judge is the plugin's (wrapped as the plugin wraps every
    # LM it hands out), it is an LM error of the example, not a score of 0.
    meter = UsageMeter()
    with dspy.context(lm=world.scripted_lm("task"), gepa_wrap_lm=lambda lm: meter.attach(lm, "judge")):
        outcome = evaluate(dspy.Predict(Triage), triage_examples(1), rubric, lm=None, threads=1).results[0]
    assert (outcome.score, outcome.lm_error) == (None, True)
    # A judge the plugin did not hand out is the test's own code failing: a crash, named.
    own, _ = judged_by(tmp_path, TRIAGE_RUBRIC, JudgeSkill("unreachable"), num_retries=0)
    with dspy.context(lm=world.scripted_lm("task")):
        outcome = evaluate(dspy.Predict(Triage), triage_examples(1), own, lm=None, threads=1).results[0]
    assert (outcome.score, outcome.lm_error, outcome.crashed) == (None, False, True)


def test_the_judge_over_http(tmp_path: Path) -> None:
    with world.ScriptedServer() as server:
        lm = dspy.LM("openai/judge", api_base=server.base_url, api_key="sk-test", engine="litellm", num_retries=0)
        rubric = load_rubric(write(tmp_path, TRIAGE_RUBRIC), judge_lm=lambda: lm)
        result = rubric(gold(), dspy.Prediction(category="shipping"))
        assert server.calls["judge"] == 1
    assert result.feedback.startswith("correct_category (0.00): Expected 'claims'")


# --------------------------------------------------------------------------- agreement with humans


AGREEMENT_RUBRIC = """\
name: category
inputs: [ticket]
references: [expected]
criteria:
  - name: correct
    description: The category is the expected one.
"""


def labeled_rows() -> list[dict[str, Any]]:
    # The judge passes a row when category == expected. Human verdicts come in every accepted form.
    return [
        {"ticket": "t1 charged twice", "category": "billing", "expected": "billing", "verdict": "pass"},
        {"ticket": "t2 dented lid", "category": "claims", "expected": "claims", "verdict": True},
        {"ticket": "t3 app crashes", "category": "technical", "expected": "technical", "verdict": 0.9},
        {"ticket": "t4 parcel late", "category": "shipping", "expected": "account", "verdict": "PASS"},
        {"ticket": "t5 password", "category": "account", "expected": "account", "verdict": "fail"},
        {"ticket": "t6 refund", "category": "billing", "expected": "billing", "verdict": 0.2},
        {"ticket": "t7 2FA codes", "category": "technical", "expected": "account", "verdict": False},
        {"ticket": "t8 webhook", "category": "account", "expected": "technical", "verdict": "false"},
    ]


@pytest.mark.parametrize("threads", [1, 4])
def test_agreement_with_human_verdicts_on_a_hand_checked_set(tmp_path: Path, threads: int) -> None:
    rubric, _ = judged_by(tmp_path, AGREEMENT_RUBRIC)
    path = tmp_path / "labeled.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in labeled_rows()), encoding="utf-8")

    agreement = rubric.agreement(path, threads=threads)

    # By hand, human x judge over the 8 rows:
    #                judge pass    judge fail
    #   human pass   t1 t2 t3 (3)  t4 (1)
    #   human fail   t5 t6 (2)     t7 t8 (2)
    # observed agreement p_o = (3 + 2) / 8 = 0.625
    # chance agreement p_e = P(h pass) P(j pass) + P(h fail) P(j fail) = 4/8 * 5/8 + 4/8 * 3/8 = 0.5
    # kappa = (p_o - p_e) / (1 - p_e) = 0.125 / 0.5 = 0.25
    assert agreement.n == 8
    assert agreement.agreement_rate == 0.625
    assert agreement.kappa == pytest.approx(0.25)
    ids = load_examples(path, inputs=["ticket"]).ids
    assert [(d.id, d.human, d.judge) for d in agreement.disagreements] == [
        (ids[3], True, False), (ids[4], False, True), (ids[5], False, True),
    ]
    assert agreement.disagreements[0].feedback == (
        "correct (0.00): Expected the response to say 'account' (expected); it does not.\n"
        "Reference answer: account"
    )
    assert str(agreement).splitlines()[0] == "judge agrees with the human verdict on 5 of 8 examples (62%); Cohen's kappa 0.250"


def test_agreement_kappa_is_undefined_when_everyone_says_pass(tmp_path: Path) -> None:
    rubric, _ = judged_by(tmp_path, AGREEMENT_RUBRIC)
    rows = [{**row, "verdict": "pass"} for row in labeled_rows() if row["category"] == row["expected"]]
    data = [dspy.Example(**row).with_inputs("ticket") for row in rows]
    agreement = rubric.agreement(data)
    assert (agreement.n, agreement.agreement_rate, agreement.kappa, agreement.disagreements) == (5, 1.0, None, ())
    assert "Cohen's kappa undefined (every example has the same label from both)" in str(agreement)


def test_agreement_rejects_a_verdict_it_cannot_read(tmp_path: Path) -> None:
    rubric, _ = judged_by(tmp_path, AGREEMENT_RUBRIC)
    rows = [{"ticket": "t1", "category": "billing", "expected": "billing", "verdict": "maybe"}]
    with pytest.raises(RubricError, match=r"example #0 has verdict='maybe'; expected pass/fail, true/false, "
                                          r"or a score in \[0, 1\]"):
        rubric.agreement(rows, inputs=["ticket"])


def test_cohen_kappa_edge_cases() -> None:
    assert cohen_kappa([True, False], [True, False]) == 1.0
    assert cohen_kappa([True, False], [False, True]) == -1.0
    assert cohen_kappa([False, False], [False, False]) is None
    # One rater constant, the other not: expected agreement < 1, kappa 0 (no better than chance).
    assert cohen_kappa([True, True], [True, False]) == 0.0


# --------------------------------------------------------------------------- a real GEPA run


CATEGORY_RUBRIC = """\
name: triage_category
criteria:
  - name: category
    description: The ticket's category is the one in the reference answer.
"""


def test_a_gepa_run_driven_by_the_rubric_lifts_the_triage_score(tmp_path: Path) -> None:
    rubric = load_rubric(write(tmp_path, CATEGORY_RUBRIC))  # no LM of its own: the context gives it
    shared = World()
    task, reflection, judge = (world.scripted_lm(role, shared) for role in ("task", "reflection", "judge"))
    examples = triage_examples()
    train, val = examples[:20], examples[20:]
    optimizer = dspy.GEPA(metric=rubric, auto="light", reflection_lm=reflection, seed=0, num_threads=1)
    with dspy.context(lm=task, gepa_judge_lm=judge):
        baseline = evaluate(dspy.ChainOfThought(Triage), val, rubric, lm=task, threads=1).score
        program = optimizer.compile(dspy.ChainOfThought(Triage), trainset=train, valset=val)
        optimized = evaluate(program, val, rubric, lm=task, threads=1).score

    assert (baseline, optimized) == (0.5, 1.0)
    instruction = program.predict.signature.instructions
    assert instruction.startswith(INSTRUCTION) and all(c.stated_in(instruction) for c in CONVENTIONS)
    assert rubric.judge_errors == 0
    # Each distinct answer is judged once, however often GEPA scores it.
    assert 0 < shared.calls["judge"] < shared.calls["task"] / 4
