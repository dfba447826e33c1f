"""The eight-rule triage task, whose reflector noise can mislead (``World(task="triage8")``).

The triage task of ``triage.py`` with three more hidden conventions (eight, as in issue 24) and half
again as many plain tickets, and two models that behave more like real ones than the five-rule
world's, so that a compile deciding on single draws can go wrong the way real ones do:

* **The reflector rewrites from what this minibatch's feedback says, one fix at a time.** A failure
  a missing convention explains teaches that convention; it adds the first such rule per proposal,
  as a reflection LM asked to improve an instruction usually fixes one thing. A failure nothing in
  the instruction explains (the convention is stated, or the ticket is a plain one: in this world
  only noise makes those fail) still asks for a change, and the reflector, sure the instruction is at
  fault, blames its rules for being too eager and appends an over-broad fallback,
  :data:`FALLBACK` ("When a ticket matches none of the rules above, go by its most obvious
  keywords."), instead of the rule the minibatch also showed.
* **The student reads an instruction top-down and the first sentence that decides a ticket wins**:
  a stated convention whose cue the ticket has, or the fallback, which decides every ticket. So the
  fallback changes no answer when it is written (validation cannot see it), but every rule the
  reflector appends below it later is dead text: that lineage has stopped learning.

Without noise every failure has a cause, the misled path never runs, and a compile learns every
rule. Under noise a fallback proposal is made on a parent's unlucky draw and looks better on its
minibatch only because of it: GEPA deciding on single draws accepts it, and the compile learns the
rules it had by then; judged on fresh draws it is rejected (see ``pytest_gepa/optimizer/draws.py``).
The noise counts calls per (instruction, ticket), so two candidates drawn on one ticket at once get
the same answers whichever thread comes first (see ``engine.World``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dspy

from .engine import Prompt, Skill, Truth
from .triage import (
    CATEGORIES,
    CONVENTIONS,
    EASY_TICKETS,
    Convention,
    _parse_examples,
    _sentences,
    _strings,
    expected_category,
    keyword_category,
)

EXTRA_CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        key="warranty",
        cues=("warranty", "guarantee"),
        category="claims",
        naive="technical",
        rule="A product failing under warranty or guarantee is a claims ticket, not a technical one.",
        tickets=(
            "The blender stopped working after two months and is still under warranty.",
            "Does the two-year guarantee cover a battery that no longer charges?",
            "My headphones died within the warranty period, what are my options?",
            "The guarantee card says five years, but the heater already gave up.",
        ),
    ),
    Convention(
        key="vouchers",
        cues=("gift cards?", "vouchers?", "promo codes?"),
        category="billing",
        naive="technical",
        rule="Gift cards, vouchers and promo codes are billing tickets, not technical ones.",
        tickets=(
            "The promo code from your newsletter is not accepted at checkout.",
            "I received a gift card for my birthday but cannot see its balance.",
            "Can I combine two vouchers on a single purchase?",
            "My voucher expired yesterday, could it be extended?",
        ),
    ),
    Convention(
        key="privacy",
        cues=("GDPR", "personal data", "privacy"),
        category="account",
        naive="technical",
        rule="Requests about personal data, privacy or GDPR are account tickets, not technical ones.",
        tickets=(
            "Under GDPR I would like a copy of everything you store about me.",
            "Please erase my personal data from your systems.",
            "What does the privacy switch for sharing my purchase history actually do?",
            "I want to know which third parties receive my personal data.",
        ),
    ),
)
CONVENTIONS8: tuple[Convention, ...] = (*CONVENTIONS, *EXTRA_CONVENTIONS)

# Two more plain tickets per category, each naming obvious keywords of that category only.
MORE_EASY: dict[str, tuple[str, ...]] = {
    "billing": ("Why was I billed for a month we had already cancelled?",
                "Please resend the invoice for order 5120 to our accountant."),
    "claims": ("I want to file a claim for the stolen bicycle from your storage unit.",
               "How do I submit the insurance paperwork for the flooded basement?"),
    "technical": ("The upload stops at ninety percent every time.",
                  "Sync between the phone app and the website is broken."),
    "account": ("My account is locked after three wrong passwords.",
                "Please change the username on the shared team profile."),
    "shipping": ("The courier says the package was delivered but nothing is here.",
                 "Can the parcel be held at the depot until Monday?"),
}
EASY8: dict[str, tuple[str, ...]] = {c: (*EASY_TICKETS[c], *MORE_EASY[c]) for c in CATEGORIES}

FALLBACK = "When a ticket matches none of the rules above, go by its most obvious keywords."


def find_convention8(ticket: str) -> Convention | None:
    return next((c for c in CONVENTIONS8 if c.cue_in(ticket)), None)


def true_category8(ticket: str) -> str:
    convention = find_convention8(ticket)
    return convention.category if convention is not None else keyword_category(ticket) or "technical"


def classify8(ticket: str, instruction: str) -> tuple[str, str]:
    """The student's (category, reasoning): the first sentence of ``instruction`` that decides
    ``ticket`` wins (a stated convention with the ticket's cue, or the fallback); else the naive reading."""
    convention = find_convention8(ticket)
    for sentence in _sentences(instruction):
        if FALLBACK in sentence:
            break
        if convention is not None and convention.stated_in(sentence):
            cue = convention.cue_in(ticket)
            return convention.category, f"The instructions say that tickets about '{cue}' are {convention.category}."
    if convention is not None:
        cue = convention.cue_in(ticket)
        return convention.naive, f"The ticket mentions '{cue}', which reads like a {convention.naive} problem."
    category = keyword_category(ticket)
    if category is None:
        return "technical", "The ticket names no obvious category, so it is treated as a technical issue."
    return category, f"The ticket is plainly about {category}."


def rules_learned8(instruction: str) -> int:
    """How many of the eight conventions the student applies under ``instruction`` (a rule written
    below the fallback is dead text: it does not count)."""
    return sum(all(classify8(t, instruction)[0] == c.category for t in c.tickets) for c in CONVENTIONS8)


# --------------------------------------------------------------------------- data


def triage8_rows() -> list[dict[str, str]]:
    """Every ticket once (30 plain, 32 tricky) with a ``split`` column: each category's plain tickets
    and each convention's tickets go to train, train, val, test in turn (train 36, val 13, test 13),
    so every rule can be learned on train, wins on val and is asked for on test."""
    plain = [(c, {"ticket": EASY8[c][i], "category": c}) for i in range(len(EASY8["billing"])) for c in CATEGORIES]
    tricky = [(c.key, {"ticket": c.tickets[i], "category": c.category}) for i in range(4) for c in CONVENTIONS8]
    order = ("train", "train", "val", "test")
    seen: dict[str, int] = {}
    rows: list[dict[str, str]] = []
    for i in range(max(len(plain), len(tricky))):
        for group, row in (pool[i] for pool in (plain, tricky) if i < len(pool)):
            rows.append({**row, "split": order[seen.get(group, 0) % len(order)]})
            seen[group] = seen.get(group, 0) + 1
    return rows


def write_triage8_jsonl(path: str | Path) -> Path:
    """Write ``triage8_rows()`` to ``path`` as JSON lines and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in triage8_rows()), encoding="utf-8")
    return path


def triage8_splits() -> dict[str, list[dspy.Example]]:
    """``triage8_rows()`` as ``dspy.Example`` objects (``ticket`` the input), by split."""
    splits: dict[str, list[dspy.Example]] = {"train": [], "val": [], "test": []}
    for row in triage8_rows():
        fields = {k: v for k, v in row.items() if k != "split"}
        splits[row["split"]].append(dspy.Example(**fields).with_inputs("ticket"))
    return splits


# --------------------------------------------------------------------------- skills


class Triage8Student(Skill):
    """The task model of the eight-rule world (``classify8``)."""

    roles = ("task",)

    def matches(self, prompt: Prompt) -> bool:
        return "ticket" in prompt.inputs and "category" in prompt.output_names

    def answer(self, prompt: Prompt) -> dict[str, Any]:
        category, reasoning = classify8(prompt.inputs["ticket"], prompt.instruction)
        return {"reasoning": reasoning, "category": category}

    def truth(self, prompt: Prompt) -> Truth:
        return Truth("category", true_category8(prompt.inputs["ticket"]), CATEGORIES)


def propose8(current: str, examples: Sequence[Mapping[str, Any]]) -> tuple[str, bool]:
    """The reflector's new instruction, and whether a failure nothing explains misled it."""
    learned: Convention | None = None
    for example in examples:
        generated = example.get("Generated Outputs")
        answer = generated.get("category") if isinstance(generated, Mapping) else None
        answer = answer.strip().lower() if isinstance(answer, str) else None
        expected = expected_category(str(example.get("Feedback", "")), answer)
        if expected is None or answer == expected:
            continue
        inputs = " ".join(_strings(example.get("Inputs", {})))
        explaining = next((c for c in CONVENTIONS8 if c.category == expected and c.cue_in(inputs)
                           and not c.stated_in(current)), None)
        if explaining is None:
            # Wrong although the instruction covers it: the rules must be too eager.
            return (current.strip() if FALLBACK in current else f"{current.strip()}\n{FALLBACK}"), True
        learned = learned or explaining
    return (f"{current.strip()}\n{learned.rule}" if learned is not None else current.strip()), False


class Triage8Reflector(Skill):
    """The reflection model of the eight-rule world (``propose8``)."""

    roles = ("reflection",)

    def matches(self, prompt: Prompt) -> bool:
        return "current_instruction" in prompt.inputs and "examples_with_feedback" in prompt.inputs

    def answer(self, prompt: Prompt) -> dict[str, Any]:
        examples = _parse_examples(prompt.inputs["examples_with_feedback"])
        new, misled = propose8(prompt.inputs["current_instruction"], examples)
        values: dict[str, Any] = {name: new for name in prompt.output_names}
        values["reasoning"] = ("The rules above answered a ticket wrongly; the model should fall back on the "
                               "obvious reading." if misled else "Added the convention the feedback revealed.")
        return values
