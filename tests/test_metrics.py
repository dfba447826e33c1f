"""Ready metrics: exact_match's feedback, and all_of combining metrics (rubrics included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dspy
import pytest
import world
from world import World
from world.triage import expected_category

from pytest_gepa.metrics import all_of, call_metric, exact_match, metric_fingerprint, read_metric_result
from pytest_gepa.rubric import load_rubric

DENT = "The parcel arrived today but the laptop lid has a big dent in it."


def gold(category: str = "claims") -> dspy.Example:
    return dspy.Example(ticket=DENT, category=category).with_inputs("ticket")


def prediction(category: str) -> dspy.Prediction:
    return dspy.Prediction(reasoning="...", category=category)


def polite(gold: Any, pred: Any) -> float:
    """A plain two-argument metric returning a bare number."""
    return 0.5


def test_exact_match_says_what_was_expected_when_wrong() -> None:
    metric = exact_match("category")
    wrong = metric(gold(), prediction("shipping"))
    assert (wrong.score, wrong.feedback) == (0.0, "Predicted category 'shipping' but expected 'claims'.")
    assert expected_category(wrong.feedback, "shipping") == "claims"
    missing = metric(gold(), dspy.Prediction(answer="claims"))
    assert (missing.score, missing.feedback) == (0.0, "The output has no 'category' field; expected 'claims'.")


def test_exact_match_confirms_a_right_answer_ignoring_case_and_spaces() -> None:
    right = exact_match("category")(gold(), prediction("  Claims "))
    assert (right.score, right.feedback) == (1.0, "Correct: category '  Claims ' matches the expected value.")
    strict = exact_match("category", case_sensitive=True)(gold(), prediction("Claims"))
    assert strict.score == 0.0
    assert exact_match("category").fingerprint != exact_match("category", case_sensitive=True).fingerprint


def test_all_of_is_the_weighted_mean_with_labelled_feedback() -> None:
    metric = all_of(exact_match("category"), polite, weights=[1, 3])
    result = metric(gold(), prediction("shipping"), None, "predict", None)
    assert result.score == pytest.approx((1 * 0.0 + 3 * 0.5) / 4)
    assert result.feedback == (
        "[exact_match('category'), weight 1] 0.00: Predicted category 'shipping' but expected 'claims'.\n"
        "[polite, weight 3] 0.50: This output got a score of 0.5."
    )
    assert expected_category(result.feedback, "shipping") == "claims"
    assert all_of(exact_match("category"), polite)(gold(), prediction("claims")).score == pytest.approx(0.75)
    assert call_metric(metric, gold(), prediction("claims")).score == pytest.approx((1 + 1.5) / 4)
    assert metric.label == "all_of(exact_match('category'), polite)"


def test_all_of_fingerprint_changes_with_its_parts_and_weights() -> None:
    base = all_of(exact_match("category"), polite, weights=[1, 2])
    assert base.fingerprint == all_of(exact_match("category"), polite, weights=[1.0, 2.0]).fingerprint
    assert metric_fingerprint(base) == base.fingerprint
    others = [
        all_of(exact_match("category"), polite, weights=[2, 1]),
        all_of(exact_match("ticket"), polite, weights=[1, 2]),
        all_of(polite, exact_match("category"), weights=[2, 1]),
        all_of(exact_match("category"), weights=[1]),
    ]
    assert len({base.fingerprint, *(m.fingerprint for m in others)}) == 5


@pytest.mark.parametrize(
    ("metrics", "weights", "message"),
    [
        ((), None, r"all_of\(\) needs at least one metric"),
        ((exact_match("category"), polite), [1], r"2 metrics but 1 weights \(\[1\]\); give one weight per metric"),
        ((exact_match("category"),), [0], r"weights must be numbers > 0, got 0 in \[0\]"),
        ((exact_match("category"),), [float("nan")], r"weights must be numbers > 0, got nan"),
        (("category",), None, r"argument 1 is 'category', not a metric"),
    ],
)
def test_all_of_rejects_what_it_cannot_combine(metrics: tuple[Any, ...], weights: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        all_of(*metrics, weights=weights)


def test_all_of_counts_the_judge_errors_of_its_rubrics(tmp_path: Path) -> None:
    path = tmp_path / "rubric.yaml"
    path.write_text("name: r\ncriteria:\n  - name: correct\n    description: Matches.\n", encoding="utf-8")
    broken = World([world.JudgeSkill("out_of_range")])
    rubric = load_rubric(path, judge_lm=lambda: world.scripted_lm("judge", broken))
    metric = all_of(rubric, exact_match("category"))
    result = metric(gold(), prediction("claims"))
    assert result.score == 0.5
    assert result.feedback.startswith(
        "[rubric 'r', weight 1] 0.00: the judge's reply could not be used: criterion 'correct' scored 1.7, outside [0, 1]"
    )
    assert metric.judge_errors == rubric.judge_errors == 1


def test_all_of_with_a_rubric_uses_a_judge_and_joins_its_critique(tmp_path: Path) -> None:
    path = tmp_path / "rubric.yaml"
    path.write_text(
        "name: triage\ncriteria:\n  - name: correct\n    description: The category matches the reference.\n",
        encoding="utf-8",
    )
    shared = World()
    rubric = load_rubric(path, judge_lm=lambda: world.scripted_lm("judge", shared))
    metric = all_of(exact_match("category"), rubric, weights=[1, 2])
    assert metric.uses_judge and not all_of(exact_match("category")).uses_judge

    result = metric(gold(), prediction("shipping"))
    assert result.score == 0.0
    assert result.feedback == (
        "[exact_match('category'), weight 1] 0.00: Predicted category 'shipping' but expected 'claims'.\n"
        "[rubric 'triage', weight 2] 0.00: correct (0.00): Expected 'claims' but the response gives 'shipping' "
        "for category.\n"
        "  Reference answer: claims"
    )
    right = read_metric_result(metric(gold(), prediction("claims")))
    assert right.score == 1.0 and "All criteria of rubric 'triage' are met (correct)." in right.feedback
    assert shared.calls["judge"] == 2
    assert metric.judge_errors == 0 and all_of(exact_match("category")).judge_errors == 0
    assert metric.fingerprint != all_of(exact_match("category"), exact_match("category"), weights=[1, 2]).fingerprint


RULE = "Tickets that mention a dent are claims, not shipping."


def test_exact_match_why_quotes_the_rows_explanation_in_the_feedback_of_a_wrong_answer() -> None:
    metric = exact_match("category", why="rule")
    example = dspy.Example(ticket=DENT, category="claims", rule=RULE).with_inputs("ticket")
    wrong = metric(example, prediction("shipping"))
    assert wrong.feedback == f"Predicted category 'shipping' but expected 'claims'. Why: {RULE}"
    assert metric(example, prediction("claims")).feedback == "Correct: category 'claims' matches the expected value."
    # An empty explanation adds nothing; the fingerprint tells a metric with why= from one without.
    bare = dspy.Example(ticket=DENT, category="claims", rule="").with_inputs("ticket")
    assert metric(bare, prediction("shipping")).feedback == "Predicted category 'shipping' but expected 'claims'."
    assert metric_fingerprint(metric) != metric_fingerprint(exact_match("category"))
    assert metric_fingerprint(exact_match("category")) == "exact_match:category:nocase"


def test_why_naming_a_column_the_data_lacks_is_an_error_naming_both() -> None:
    with pytest.raises(ValueError, match=r"exact_match\('category'\): the example has no 'rule' field .*'ticket'"):
        exact_match("category", why="rule")(gold(), prediction("shipping"))


def test_all_of_why_quotes_the_explanation_under_a_perfect_score_only() -> None:
    metric = all_of(exact_match("category"), polite, why="rule")
    example = dspy.Example(ticket=DENT, category="claims", rule=RULE).with_inputs("ticket")
    assert call_metric(metric, example, prediction("shipping")).feedback.endswith(f"\nWhy: {RULE}")
    perfect = all_of(exact_match("category"), why="rule")
    assert "Why:" not in call_metric(perfect, example, prediction("claims")).feedback
