"""The scripted judge: answers pytest-gepa's rubric judge (``pytest_gepa.rubric.judge.JudgeSignature``).

It reads each criterion the way a literal-minded grader would:

* a criterion whose name or description speaks of being concise, brief or short is a **length**
  check: the response (all its fields) is met at up to ``max_words`` words, half met at up to twice
  that, and not met beyond;
* any other criterion is a **reference** check: each reference field's value must appear (whole
  words, any case) in the response field of the same name, or anywhere in the response when no
  field has that name; the score is the share of reference fields found. Without a reference the
  criterion is met by any non-empty response.

A critique that falls short says what was expected, in the words the triage reflector listens for
("Expected 'claims' but the response gives 'shipping' for category."), so a rubric can drive a
real GEPA run in the scripted world.

``JudgeSkill(mode=...)`` misbehaves on request, for a ``World`` built in a test: ``"garbage"``
replies with text that is not a list of verdicts, ``"out_of_range"`` scores the first criterion
1.7, ``"missing"`` leaves out the last criterion, and ``"unreachable"`` fails as a dropped
connection would (an LM transport error, not a reply).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from dspy import lm15

from .engine import Prompt, Skill

JudgeMode = Literal["honest", "garbage", "out_of_range", "missing", "unreachable"]
MODES: tuple[str, ...] = ("honest", "garbage", "out_of_range", "missing", "unreachable")
_LENGTH_WORDS = re.compile(r"\b(?:concise|brief|short|length)\b", re.IGNORECASE)


class JudgeSkill(Skill):
    """The judge model: scores each rubric criterion from the material in the prompt."""

    roles = ("judge",)

    def __init__(self, mode: JudgeMode = "honest", *, max_words: int = 40) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.max_words = max_words

    def matches(self, prompt: Prompt) -> bool:
        return "verdicts" in prompt.output_names and {"criteria", "response"} <= set(prompt.inputs)

    def answer(self, prompt: Prompt) -> dict[str, Any]:
        if self.mode == "unreachable":
            raise lm15.TransportError("connection refused by the scripted judge")
        if self.mode == "garbage":
            return {"verdicts": "Looks fine to me, I would give it a solid B+."}
        criteria = _json(prompt.inputs.get("criteria"), [])
        reference = _json(prompt.inputs.get("reference"), {})
        response = _json(prompt.inputs.get("response"), {})
        verdicts = [self.judge(c, reference, response) for c in criteria if isinstance(c, Mapping)]
        if self.mode == "out_of_range" and verdicts:
            verdicts[0]["score"] = 1.7
        if self.mode == "missing" and verdicts:
            verdicts.pop()
        return {"verdicts": verdicts}

    def judge(self, criterion: Mapping[str, Any], reference: Mapping[str, Any],
              response: Mapping[str, Any]) -> dict[str, Any]:
        """One verdict ``{criterion, critique, score}`` for ``criterion``."""
        name = str(criterion.get("name", ""))
        text = f"{name} {criterion.get('description', '')}"
        if _LENGTH_WORDS.search(text):
            score, critique = self._length(response)
        else:
            score, critique = _against_reference(reference, response)
        return {"criterion": name, "critique": critique, "score": score}

    def _length(self, response: Mapping[str, Any]) -> tuple[float, str]:
        words = sum(len(_text(value).split()) for value in response.values())
        if words <= self.max_words:
            return 1.0, f"The response is {words} words long, within {self.max_words}."
        score = 0.5 if words <= 2 * self.max_words else 0.0
        return score, f"The response is {words} words long; keep it within {self.max_words} words."


def _against_reference(reference: Mapping[str, Any], response: Mapping[str, Any]) -> tuple[float, str]:
    everything = " ".join(_text(value) for value in response.values())
    if not reference:
        if everything.strip() and everything.strip() != "N/A":
            return 1.0, "There is no reference answer; the response is present."
        return 0.0, "The response is empty."
    found, critiques = 0, []
    for name, expected in reference.items():
        wanted = _text(expected).strip()
        given = _text(response[name]).strip() if name in response else None
        haystack = given if given is not None else everything
        if _contains(haystack, wanted):
            found += 1
        elif given is not None:
            critiques.append(f"Expected {wanted!r} but the response gives {given!r} for {name}.")
        else:
            critiques.append(f"Expected the response to say {wanted!r} ({name}); it does not.")
    if not critiques:
        return 1.0, "The response agrees with the reference answer."
    return found / len(reference), " ".join(critiques)


def _contains(text: str, wanted: str) -> bool:
    return bool(wanted) and re.search(rf"(?<!\w){re.escape(wanted)}(?!\w)", text, re.IGNORECASE) is not None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _json(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default
