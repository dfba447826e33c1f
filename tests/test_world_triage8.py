"""The eight-rule world (``World(task="triage8")``): its data, its student that reads an instruction
top-down, its reflector that noise can mislead, and both ways of serving it. The compiles it exists
for are in ``test_noisy_compiles.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import dspy
import pytest
import world
from world.engine import World
from world.server import ScriptedServer
from world.triage import INSTRUCTION, Triage, keyword_category
from world.triage8 import (
    CONVENTIONS8,
    FALLBACK,
    classify8,
    find_convention8,
    propose8,
    rules_learned8,
    triage8_rows,
    triage8_splits,
)

ALL_RULES = "\n".join([INSTRUCTION, *(c.rule for c in CONVENTIONS8)])
TICKETS = [row["ticket"] for row in triage8_rows()]


# Cached answers would hide calls from the counters these tests check.
pytestmark = pytest.mark.usefixtures("no_dspy_cache")


def test_rows_are_distinct_and_split_so_every_rule_is_in_train_val_and_test() -> None:
    rows = triage8_rows()
    assert len({row["ticket"] for row in rows}) == len(rows) == 62
    assert {name: len(examples) for name, examples in triage8_splits().items()} == {"train": 36, "val": 13, "test": 13}
    for convention in CONVENTIONS8:
        splits = sorted(row["split"] for row in rows if find_convention8(row["ticket"]) is convention)
        assert splits == ["test", "train", "train", "val"], convention.key
    for row in rows:
        convention = find_convention8(row["ticket"])
        assert row["category"] == (convention.category if convention else keyword_category(row["ticket"]))


def test_the_student_follows_stated_rules_top_down_and_stops_at_the_fallback() -> None:
    assert rules_learned8(INSTRUCTION) == 0 and rules_learned8(ALL_RULES) == 8
    warranty = next(c for c in CONVENTIONS8 if c.key == "warranty")
    ticket = warranty.tickets[0]
    assert classify8(ticket, INSTRUCTION)[0] == "technical"
    assert classify8(ticket, f"{INSTRUCTION}\n{warranty.rule}")[0] == "claims"
    # Below the fallback a rule is dead text; above it, it still decides.
    assert classify8(ticket, f"{INSTRUCTION}\n{FALLBACK}\n{warranty.rule}")[0] == "technical"
    assert classify8(ticket, f"{INSTRUCTION}\n{warranty.rule}\n{FALLBACK}")[0] == "claims"
    assert rules_learned8(f"{INSTRUCTION}\n{FALLBACK}\n" + "\n".join(c.rule for c in CONVENTIONS8)) == 0
    # The fallback changes no answer when it is written: validation cannot see it.
    assert all(classify8(t, f"{ALL_RULES}\n{FALLBACK}") == classify8(t, ALL_RULES) for t in TICKETS)


def _example(ticket: str, answer: str) -> dict[str, Any]:
    expected = next(row["category"] for row in triage8_rows() if row["ticket"] == ticket)
    feedback = (f"Correct: category {answer!r} matches the expected value." if answer == expected
                else f"Predicted category {answer!r} but expected {expected!r}.")
    return {"Inputs": {"ticket": ticket}, "Generated Outputs": {"category": answer}, "Feedback": feedback}


def test_the_reflector_learns_one_explained_rule_and_is_misled_by_an_unexplained_failure() -> None:
    warranty, vouchers = (next(c for c in CONVENTIONS8 if c.key == key) for key in ("warranty", "vouchers"))
    plain = "My package has been in transit for a week. Where is it?"
    # Two failures a missing rule explains: one rule per proposal, the first.
    new, misled = propose8(INSTRUCTION, [_example(warranty.tickets[0], "technical"),
                                         _example(vouchers.tickets[0], "technical"), _example(plain, "shipping")])
    assert (new, misled) == (f"{INSTRUCTION}\n{warranty.rule}", False)
    # A plain ticket answered wrong (only noise does that) misleads it, whatever else the minibatch shows.
    new, misled = propose8(INSTRUCTION, [_example(warranty.tickets[0], "technical"), _example(plain, "billing")])
    assert (new, misled) == (f"{INSTRUCTION}\n{FALLBACK}", True)
    # So does a covered ticket answered wrong; a second fallback is not added.
    covered = f"{INSTRUCTION}\n{warranty.rule}\n{FALLBACK}"
    assert propose8(covered, [_example(warranty.tickets[1], "technical")]) == (covered, True)


def test_gepa_noise_free_learns_all_eight_rules() -> None:
    shared = World(task="triage8")
    splits = triage8_splits()

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        predicted = str(pred.category).strip().lower()
        return dspy.Prediction(score=float(predicted == gold.category),
                               feedback=f"Predicted {predicted!r} but expected {gold.category!r}")

    optimizer = dspy.GEPA(metric=metric, auto="light", reflection_lm=world.scripted_lm("reflection", shared),
                          seed=0, num_threads=1)
    with dspy.context(lm=world.scripted_lm("task", shared)):
        program = optimizer.compile(dspy.ChainOfThought(Triage), trainset=splits["train"], valset=splits["val"])
    assert rules_learned8(program.predict.signature.instructions) == 8


def _ask(respond: Any, ticket: str, instruction: str = INSTRUCTION) -> str:
    signature = Triage.with_instructions(instruction)
    reply = respond(dspy.ChatAdapter().format(signature, demos=[], inputs={"ticket": ticket}))
    return str(dspy.ChatAdapter().parse(signature, reply)["category"])


NOISY = {"noise": 0.5, "borderline": 0.25, "seed": 7}


def test_noisy_answers_count_per_instruction_and_ticket_so_threads_cannot_reorder_them() -> None:
    ticket = next(t for t in TICKETS if World(**NOISY, task="triage8").noise.is_borderline(json.dumps({"ticket": t})))
    instructions = [INSTRUCTION, ALL_RULES]

    def answers(order: list[str]) -> dict[str, list[str]]:
        noisy = World(**NOISY, task="triage8")
        seen: dict[str, list[str]] = {i: [] for i in instructions}
        for instruction in order:
            seen[instruction].append(_ask(lambda m: noisy.respond("task", m), ticket, instruction))
        return seen

    one_way = answers([INSTRUCTION] * 6 + [ALL_RULES] * 6)
    assert one_way == answers([ALL_RULES, INSTRUCTION] * 6)
    assert len(set(one_way[ALL_RULES])) > 1  # a borderline ticket varies from call to call
    # Threads asking both instructions at once get those same answers.
    noisy = World(**NOISY, task="triage8")
    threaded: dict[str, list[str]] = {i: [] for i in instructions}

    def ask_six(instruction: str) -> None:
        threaded[instruction].extend(_ask(lambda m: noisy.respond("task", m), ticket, instruction) for _ in range(6))

    workers = [threading.Thread(target=ask_six, args=(i,)) for i in instructions]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert threaded == one_way


def test_the_world_is_chosen_by_argument_environment_or_server_option(monkeypatch: pytest.MonkeyPatch) -> None:
    ticket = next(c for c in CONVENTIONS8 if c.key == "privacy").tickets[0]
    monkeypatch.delenv("GEPA_TEST_NOISE", raising=False)
    monkeypatch.delenv("GEPA_TEST_WORLD", raising=False)
    assert World().task == "triage" and World(task="triage8").task == "triage8"
    monkeypatch.setenv("GEPA_TEST_WORLD", "triage8")
    assert World().task == "triage8"
    expected = classify8(ticket, ALL_RULES)[0]
    assert expected == "account"
    assert _ask(lambda m: World().respond("task", m), ticket, ALL_RULES) == expected
    with ScriptedServer(World(task="triage8")) as server:
        lm = dspy.LM("openai/task", api_base=server.base_url, api_key="sk-test", cache=False, num_retries=0)
        with dspy.context(lm=lm):
            assert dspy.Predict(Triage.with_instructions(ALL_RULES))(ticket=ticket).category == expected
        lm.close()
    monkeypatch.setenv("GEPA_TEST_WORLD", "triage9")
    with pytest.raises(ValueError, match=r"GEPA_TEST_WORLD: the world plays one of triage, triage8, got 'triage9'"):
        World()


def test_the_standalone_server_plays_the_eight_rule_world() -> None:
    ticket = next(c for c in CONVENTIONS8 if c.key == "vouchers").tickets[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    env.pop("GEPA_TEST_WORLD", None)
    process = subprocess.Popen([sys.executable, "-m", "world.server", "--world", "triage8"], stdout=subprocess.PIPE,
                               text=True, env=env)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        lm = dspy.LM("openai/task", api_base=base_url, api_key="sk-test", cache=False, num_retries=0)
        with dspy.context(lm=lm):
            assert dspy.Predict(Triage.with_instructions(ALL_RULES))(ticket=ticket).category == "billing"
        lm.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
