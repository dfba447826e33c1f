"""A two-step help-desk bot: rewrite the customer's message as a search query, find the
help-center article, answer from it. Two predictors, so one artifact holds two instructions."""

from __future__ import annotations

import re

import dspy

ARTICLES = {
    "refunds": "Refunds: you can return any item within 30 days of delivery for a full refund. "
               "Start the return from Orders > Return item; the money is back on your card in 5 business days.",
    "password": "Password reset: click 'Forgot password' on the sign-in page and we email you a reset link. "
                "The link expires after 24 hours; request a new one if it has.",
    "shipping": "Shipping times: standard shipping takes 3 to 5 business days, express shipping takes 1 business "
                "day. Orders placed before 2 pm ship the same day.",
    "cancel": "Cancel a subscription: go to Account > Subscriptions and choose Cancel. You keep access until the "
              "end of the billing period and are not charged again.",
    "address": "Change your address: open Account > Addresses to edit your delivery address. Orders that have "
               "already shipped keep the old address.",
    "warranty": "Warranty: every device has a 2 year warranty against defects. Contact support with your order "
                "number and a photo of the fault to start a warranty repair.",
}

_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"a", "an", "the", "i", "my", "me", "to", "of", "and", "or", "is", "it", "in", "on", "for", "do", "how",
         "can", "what", "you", "your", "we", "our", "with", "at", "be", "this", "that", "was", "are", "if"}


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def search(query: str) -> str:
    """The id of the article sharing the most words with the query (a stand-in for a search index)."""
    words = _words(query)
    return max(ARTICLES, key=lambda key: (len(words & _words(key + " " + ARTICLES[key])), key == "refunds"))


class RewriteQuery(dspy.Signature):
    """Rewrite the customer's message as a short search query for the help-center articles."""

    message: str = dspy.InputField()
    query: str = dspy.OutputField()


class Answer(dspy.Signature):
    """Answer the customer's message in one or two sentences, using only the help-center article."""

    message: str = dspy.InputField()
    article: str = dspy.InputField()
    answer: str = dspy.OutputField()


class HelpDesk(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rewrite = dspy.Predict(RewriteQuery)
        self.answer = dspy.Predict(Answer)

    def forward(self, message: str) -> dspy.Prediction:
        query = str(self.rewrite(message=message).query or "")
        article_id = search(query)
        answer = self.answer(message=message, article=ARTICLES[article_id]).answer
        return dspy.Prediction(query=query, article_id=article_id, answer=answer)
