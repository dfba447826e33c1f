"""A two-predictor pipeline (rewrite the query, then answer from the article it finds) compiled as
one target: GEPA tunes both instructions, and one artifact holds both."""

import dspy
from helpdesk import HelpDesk


def helpdesk_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    """Half for finding the right article, half for an answer that states the key fact. The feedback
    speaks to the predictor GEPA is improving: the query writer, or the answer writer."""
    article_id = getattr(pred, "article_id", None)
    answer = str(getattr(pred, "answer", "") or "")
    found = article_id == gold.article
    stated = gold.fact.lower() in answer.lower()
    score = (float(found) + float(stated)) / 2
    if pred_name == "rewrite":
        feedback = (f"The query {getattr(pred, 'query', '')!r} found the {gold.article!r} article, as it should."
                    if found else
                    f"The query {getattr(pred, 'query', '')!r} found the {article_id!r} article, but the message "
                    f"is about {gold.article!r}: use the words a help-center article on {gold.article} would use.")
    else:
        feedback = (f"The answer states {gold.fact!r}, the fact the customer needs." if stated else
                    f"The answer {answer[:200]!r} does not state {gold.fact!r}; quote that fact from the article.")
    return dspy.Prediction(score=score, feedback=feedback)


def test_helpdesk_pipeline(gepa, gepa_examples):
    data = gepa_examples("data/helpdesk.jsonl", inputs=["message"])
    program = gepa.compile(HelpDesk(), data, metric=helpdesk_metric)
    # Thresholds for the 135M embedded model: see ../README.md.
    gepa.gate(program, data.test, metric=helpdesk_metric, min_score=0.25, max_drop=0.05)
