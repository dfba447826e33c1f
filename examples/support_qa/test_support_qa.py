"""A support-reply bot whose metric is a judge rubric: the same YAML file is GEPA's feedback metric,
the gate's metric, and a plain eval assertion."""

import dspy
import pytest

RUBRIC = "rubrics/support_answer.yaml"


def test_support_answers(gepa, gepa_examples, gepa_rubric):
    data = gepa_examples("data/support_qa.yaml", inputs=["question"])
    judge = gepa_rubric(RUBRIC)
    program = gepa.compile(dspy.ChainOfThought("question -> answer"), data, metric=judge)
    # Thresholds for the 135M embedded model as both bot and judge: see ../README.md.
    gepa.gate(program, data.test, metric=judge, min_score=0.15, max_drop=0.05)


def test_a_known_good_reply_passes_the_rubric(gepa_rubric, gepa_judge_lm, request):
    """The rubric as a plain eval: no optimizer, no artifact, just `assert verdict.passed`. Under
    --gepa-replay its judge call is answered from this test's own cassette."""
    if str(gepa_judge_lm.model).startswith("openai/local-"):
        request.applymarker(pytest.mark.xfail(
            reason="the 135M embedded model is no judge (it scores 2.5 on a 0-1 scale, or names the wrong "
                   "criterion); run with --gepa-judge-lm and a real model to make this assertion count"))
    judge = gepa_rubric(RUBRIC)
    verdict = judge.evaluate(
        question="How do I reset my password?",
        answer='Click "Forgot password" on the sign-in page and we will email you a reset link; it works for 24 hours.',
    )
    assert verdict.passed, verdict.feedback
