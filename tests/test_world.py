"""The scripted world itself: its data, its student and reflector, both ways of serving it, and
the property everything else relies on — a real ``dspy.GEPA`` run measurably improves the score."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import dspy
import pytest
import world
from dspy.teleprompt.gepa.instruction_proposal import InstructionProposer
from world.engine import Prompt, Skill, World, parse_prompt
from world.server import ChatRequest, HTTPReply, ScriptedServer
from world.triage import (
    CATEGORIES,
    CONVENTIONS,
    EASY_TICKETS,
    INSTRUCTION,
    Triage,
    classify,
    expected_category,
    find_convention,
    keyword_category,
    propose_instruction,
    triage_examples,
    triage_rows,
    true_category,
    write_triage_jsonl,
)

RULES = {c.key: c.rule for c in CONVENTIONS}
ALL_RULES = "\n".join([INSTRUCTION, *(c.rule for c in CONVENTIONS)])


# Cached answers would hide calls from the counters these tests check.
pytestmark = pytest.mark.usefixtures("no_dspy_cache")


def metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
    predicted, expected = str(pred.category).strip().lower(), gold.category
    return dspy.Prediction(
        score=float(predicted == expected), feedback=f"Predicted {predicted!r} but expected {expected!r}"
    )


def evaluate(program: dspy.Module, examples: list[dspy.Example], lm: dspy.LM) -> float:
    with dspy.context(lm=lm):
        result = dspy.Evaluate(devset=examples, metric=metric, num_threads=1, display_progress=False)(program)
    return float(result.score) / 100  # Evaluate reports a percentage


# --------------------------------------------------------------------------- data


def test_rows_are_deterministic_distinct_and_half_tricky(tmp_path: Path) -> None:
    rows = triage_rows()
    assert rows == triage_rows()
    assert len(rows) == 40 and len({r["ticket"] for r in rows}) == 40
    assert {r["category"] for r in rows} == set(CATEGORIES)
    assert sum(find_convention(r["ticket"]) is not None for r in rows) == 20
    more = triage_rows(100)
    assert more[:40] == rows and len({r["ticket"] for r in more}) == 100

    path = write_triage_jsonl(tmp_path / "data" / "triage.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows


def test_every_convention_is_in_both_halves() -> None:
    # The tests below train on the first 20 rows and validate on the next 20.
    rows = triage_rows()
    for half in (rows[:20], rows[20:]):
        conventions = Counter(c.key for r in half if (c := find_convention(r["ticket"])) is not None)
        assert set(conventions) == {c.key for c in CONVENTIONS} and min(conventions.values()) >= 2


def test_pytest_gepa_hash_split_lets_every_convention_be_learned_and_selected(tmp_path: Path) -> None:
    """pytest-gepa splits rows by a hash of their id (here: of the ticket); the tickets are worded so that every convention
    has a train row (to learn it from) and a val row (so a candidate stating it wins selection).
    If the hash scheme changes, reword a ticket rather than weaken this."""
    from pytest_gepa.data import load_examples

    data = load_examples(write_triage_jsonl(tmp_path / "triage.jsonl"), inputs=["ticket"])
    for name in ("train", "val"):
        found = {c.key for e in data.split(name) if (c := find_convention(e.ticket)) is not None}
        assert found == {c.key for c in CONVENTIONS}, f"conventions missing from {name}"


def test_conventions_are_unambiguous() -> None:
    for category, tickets in EASY_TICKETS.items():
        for ticket in tickets:
            assert find_convention(ticket) is None, ticket
            assert keyword_category(ticket) == category, ticket
            assert classify(ticket, INSTRUCTION)[0] == category
    for convention in CONVENTIONS:
        assert convention.naive != convention.category
        assert not convention.stated_in(INSTRUCTION)
        # Each rule teaches its own convention and no other.
        assert [c.key for c in CONVENTIONS if c.stated_in(convention.rule)] == [convention.key]
        for ticket in convention.tickets:
            assert [c.key for c in CONVENTIONS if c.cue_in(ticket)] == [convention.key], ticket
            assert classify(ticket, INSTRUCTION)[0] == convention.naive
            assert classify(ticket, f"{INSTRUCTION}\n{convention.rule}")[0] == convention.category


# --------------------------------------------------------------------------- prompts and skills


class Spy(Skill):
    """Records every prompt and answers none, so the real skills still do."""

    def __init__(self) -> None:
        self.prompts: list[Prompt] = []

    def matches(self, prompt: Prompt) -> bool:
        self.prompts.append(prompt)
        return False


@pytest.mark.parametrize("adapter", [dspy.ChatAdapter(), dspy.JSONAdapter()], ids=["chat", "json"])
@pytest.mark.parametrize("module", [dspy.ChainOfThought, dspy.Predict], ids=["cot", "predict"])
def test_student_reads_real_adapter_prompts(adapter: dspy.Adapter, module: type[dspy.Module]) -> None:
    spy = Spy()
    lm = world.scripted_lm("task", World([spy, *World().skills]))
    ticket = "The parcel arrived today but the laptop lid has a big dent in it."
    with dspy.context(lm=lm, adapter=adapter):
        naive = module(Triage)(ticket=ticket)
        taught = module(Triage.with_instructions(ALL_RULES))(ticket=ticket)

    assert (naive.category, taught.category) == ("shipping", "claims")
    prompt = spy.prompts[0]
    assert prompt.instruction == INSTRUCTION
    assert prompt.inputs == {"ticket": ticket}
    fields = ("reasoning", "category") if module is dspy.ChainOfThought else ("category",)
    assert prompt.output_names == fields
    assert prompt.output_format == ("json" if isinstance(adapter, dspy.JSONAdapter) else "chat")
    assert spy.prompts[1].instruction == ALL_RULES


def test_other_prompts_get_well_formed_placeholders() -> None:
    lm = world.scripted_lm("judge")
    signature = dspy.Signature("question -> answer: int, confident: bool, tags: list[str], verdict: str")
    with dspy.context(lm=lm):
        pred = dspy.Predict(signature)(question="Is this ticket polite?")
    assert (pred.answer, pred.confident, pred.tags, pred.verdict) == (0, False, [], "N/A")
    assert lm("hello") == ["OK"]  # a plain prompt, not DSPy's format


def test_skills_are_role_gated() -> None:
    # The task model cannot reflect: as GEPA's reflection LM it only returns placeholders.
    messages = [{"role": "user", "content": "[[ ## ticket ## ]]\nMy invoice is wrong"}]
    prompt = parse_prompt("reflection", messages)
    assert World().skill_for(prompt) is None
    assert World().skill_for(parse_prompt("task", messages)) is None  # no output fields asked for


# --------------------------------------------------------------------------- reflector

FAILING = [
    {
        "Inputs": {"ticket": "My new phone came out of the box with a cracked screen."},
        "Generated Outputs": {"reasoning": "...", "category": "shipping"},
        "Feedback": "Predicted 'shipping' but expected 'claims'",
    },
    {
        "Inputs": {"ticket": "I was charged twice for order 4417, please check the invoice."},
        "Generated Outputs": {"reasoning": "...", "category": "billing"},
        "Feedback": "Predicted 'billing' but expected 'billing'",
    },
    {
        "Inputs": {"ticket": "Where can I generate a new API token for the warehouse integration?"},
        "Generated Outputs": {"reasoning": "...", "category": "account"},
        "Feedback": "Wrong: this one belongs to technical.",
    },
]


@pytest.mark.parametrize("adapter", [None, dspy.ChatAdapter()], ids=["json-default", "chat"])
def test_reflector_answers_gepas_instruction_proposer(adapter: dspy.Adapter | None) -> None:
    lm = world.scripted_lm("reflection")
    proposer = InstructionProposer(adapter=adapter)
    with dspy.context(lm=lm):
        new = proposer({"predict": INSTRUCTION}, {"predict": FAILING}, ["predict"])["predict"]
        again = proposer({"predict": new}, {"predict": FAILING}, ["predict"])["predict"]
    assert new == f"{INSTRUCTION}\n{RULES['damage-on-arrival']}\n{RULES['api-access']}"
    assert again == new  # nothing new to learn from the same examples
    assert lm.engine.world.calls["reflection"] == 2


def test_reflector_needs_feedback_that_names_the_expected_category() -> None:
    silent = [{**example, "Feedback": "This trajectory got a score of 0.0."} for example in FAILING]
    assert propose_instruction(INSTRUCTION, silent) == INSTRUCTION
    assert expected_category("Predicted category 'shipping' but expected 'claims'.") == "claims"
    assert expected_category("It should have been account, not technical.", "technical") == "account"
    assert expected_category("Correct: the category is 'claims'.", "claims") is None


# --------------------------------------------------------------------------- GEPA


def run_gepa(metric_fn: Any = metric) -> tuple[dspy.Module, float, World]:
    shared = World()
    task, reflection = world.scripted_lm("task", shared), world.scripted_lm("reflection", shared)
    examples = triage_examples()
    optimizer = dspy.GEPA(metric=metric_fn, auto="light", reflection_lm=reflection, seed=0, num_threads=1)
    started = time.perf_counter()
    with dspy.context(lm=task):
        program = optimizer.compile(dspy.ChainOfThought(Triage), trainset=examples[:20], valset=examples[20:])
    return program, time.perf_counter() - started, shared


@pytest.fixture(scope="module")
def gepa_run() -> tuple[dspy.Module, float, World]:
    return run_gepa()


def test_baseline_scores_about_half() -> None:
    lm = world.scripted_lm("task")
    examples = triage_examples()
    assert evaluate(dspy.ChainOfThought(Triage), examples, lm) == 0.5
    assert evaluate(dspy.Predict(Triage), examples, lm) == 0.5
    assert lm.engine.world.calls["task"] == 80


def test_gepa_lifts_the_val_score_to_one(gepa_run: tuple[dspy.Module, float, World]) -> None:
    program, seconds, shared = gepa_run
    val = triage_examples()[20:]
    lm = world.scripted_lm("task")
    assert evaluate(dspy.ChainOfThought(Triage), val, lm) == 0.5
    assert evaluate(program, val, lm) == 1.0
    instruction = program.predict.signature.instructions
    assert instruction.startswith(INSTRUCTION)
    assert all(c.stated_in(instruction) for c in CONVENTIONS)
    assert shared.calls["reflection"] >= 1 and shared.calls["task"] > 40
    print(f"GEPA light: {seconds:.2f}s, calls {dict(shared.calls)}")


def test_gepa_is_deterministic(gepa_run: tuple[dspy.Module, float, World]) -> None:
    program, _, shared = gepa_run
    again, _, shared_again = run_gepa()
    assert again.predict.signature.instructions == program.predict.signature.instructions
    assert shared_again.calls == shared.calls


def test_gepa_learns_nothing_without_feedback() -> None:
    def score_only(
        gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
    ) -> float:
        return float(str(pred.category).strip().lower() == gold.category)

    program, _, _ = run_gepa(score_only)
    assert program.predict.signature.instructions == INSTRUCTION
    assert evaluate(program, triage_examples()[20:], world.scripted_lm("task")) == 0.5


# --------------------------------------------------------------------------- other in-process paths


def test_async_calls_use_the_async_engine() -> None:
    lm = world.scripted_lm("task")

    async def main() -> Any:
        with dspy.context(lm=lm):
            return await dspy.ChainOfThought(Triage).acall(
                ticket="Can we downgrade our team from ten seats to five?"
            )

    assert asyncio.run(main()).category == "account"


def test_lm_state_round_trips() -> None:
    state = world.scripted_lm("reflection").dump_state()
    loaded = dspy.LM.load_state(state, allow_custom_lm_class=True)
    assert isinstance(loaded.engine, world.ScriptedEngine) and loaded.engine.role == "reflection"


# --------------------------------------------------------------------------- HTTP


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("engine", ["litellm", "auto"])
def test_the_student_over_http(engine: str) -> None:
    ticket = "Our webhook endpoint stopped receiving order events yesterday afternoon."
    with ScriptedServer() as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        lm = dspy.LM("openai/task", api_base=server.base_url, api_key="sk-test", engine=engine, num_retries=0)
        with dspy.context(lm=lm):
            remote = dspy.ChainOfThought(Triage)(ticket=ticket)
            taught = dspy.ChainOfThought(Triage.with_instructions(ALL_RULES))(ticket=ticket)
        lm.close()
        assert server.calls["task"] == 2 and server.world.calls["task"] == 2

    with dspy.context(lm=world.scripted_lm("task")):
        local = dspy.ChainOfThought(Triage)(ticket=ticket)
    assert (remote.category, remote.reasoning) == (local.category, local.reasoning)
    assert (remote.category, taught.category) == ("account", "technical")
    usage = lm.history[-1]["usage"]
    assert (
        usage["prompt_tokens"] > 0
        and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    )


def test_the_reflector_over_http() -> None:
    with ScriptedServer() as server:
        lm = dspy.LM("openai/reflection", api_base=server.base_url, api_key="sk-test", engine="litellm")
        with dspy.context(lm=lm):
            new = InstructionProposer()({"p": INSTRUCTION}, {"p": FAILING[:1]}, ["p"])["p"]
        assert server.calls == Counter({"reflection": 1})
    assert new == f"{INSTRUCTION}\n{RULES['damage-on-arrival']}"


def test_server_latency_hooks_and_errors() -> None:
    body = {"model": "task", "messages": [{"role": "user", "content": "[[ ## ticket ## ]]\nhi"}]}
    with ScriptedServer(latency=0.2) as server:
        url = f"{server.base_url}/chat/completions"
        started = time.perf_counter()
        status, reply = post(url, body)
        assert status == 200 and time.perf_counter() - started >= 0.2
        assert reply["object"] == "chat.completion" and reply["choices"][0]["message"]["content"] == "OK"
        assert set(reply["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}

        server.latency = 0.0
        seen: list[ChatRequest] = []

        def throttle(request: ChatRequest) -> HTTPReply | None:
            seen.append(request)
            return HTTPReply(429, {"error": {"message": "slow down"}}) if request.number == 2 else None

        server.hooks["task"] = throttle
        assert post(url, body)[0] == 429
        assert post(url, body)[0] == 200
        assert [r.number for r in seen] == [2, 3] and seen[0].role == "task"
        assert server.calls["task"] == 3 and server.world.calls["task"] == 2

        assert post(url, {"model": "task"})[0] == 400
        assert post(f"{server.base_url}/embeddings", body)[0] == 404
    with pytest.raises(RuntimeError):
        server.base_url  # noqa: B018 - stopped


def test_server_entry_point_serves_until_terminated() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    process = subprocess.Popen(
        [sys.executable, "-m", "world.server", "--port", "0"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        status, reply = post(
            f"{base_url}/chat/completions",
            {"model": "judge", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert status == 200 and reply["model"] == "judge"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()


# --------------------------------------------------------------------------- noise


TICKETS = [row["ticket"] for row in triage_rows()]
NOISY = {"noise": 0.5, "borderline": 0.25, "seed": 7}


def triage_messages(ticket: str) -> list[dict[str, Any]]:
    return dspy.ChatAdapter().format(Triage, demos=[], inputs={"ticket": ticket})


def category_of(reply: str) -> str:
    return str(dspy.ChatAdapter().parse(Triage, reply)["category"])


def ask_all(ask: Any, repeats: int = 6) -> dict[str, list[str]]:
    """Each ticket asked ``repeats`` times in a row: ticket -> its answers, in call order."""
    return {ticket: [category_of(ask(triage_messages(ticket))) for _ in range(repeats)] for ticket in TICKETS}


def world_asker(w: World) -> Any:
    return lambda messages: w.respond("task", messages)


def borderline_tickets(noise: world.Noise) -> set[str]:
    return {t for t in TICKETS if noise.is_borderline(json.dumps({"ticket": t}))}


def test_noise_zero_is_the_deterministic_world(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEPA_TEST_NOISE", raising=False)
    expected = {t: [classify(t, INSTRUCTION)[0]] * 3 for t in TICKETS}
    assert ask_all(world_asker(World()), repeats=3) == expected
    assert ask_all(world_asker(World(noise=0.0, seed=3)), repeats=3) == expected
    assert not World().noise.active


def test_the_same_seed_gives_the_same_answers_and_another_seed_others() -> None:
    first = ask_all(world_asker(World(**NOISY)))
    assert first == ask_all(world_asker(World(**NOISY)))
    assert first != ask_all(world_asker(World(**{**NOISY, "seed": 8})))


def test_a_borderline_input_varies_from_call_to_call_and_the_others_never_do() -> None:
    noisy = World(**NOISY)
    answers = ask_all(world_asker(noisy), repeats=8)
    borderline = borderline_tickets(noisy.noise)
    # A stable hash picks them: about a quarter of the 40, and the same ones whatever the seed.
    assert 5 <= len(borderline) <= 15 and borderline == borderline_tickets(World(**{**NOISY, "seed": 99}).noise)
    for ticket, said in answers.items():
        plain = classify(ticket, INSTRUCTION)[0]
        if ticket in borderline:
            assert len(set(said)) > 1, (ticket, said)  # 8 calls at noise 0.5: all alike is 1 in 128
            wrong = [a for a in said if a != plain]
            assert all(a in CATEGORIES and a != true_category(ticket) for a in wrong), said
        else:
            assert said == [plain] * 8, (ticket, said)


def test_noisy_answers_do_not_depend_on_how_threads_interleave() -> None:
    """dspy evaluates in threads: the nth answer an input gets is the same whichever thread asks first."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    sequential = ask_all(world_asker(World(**NOISY)), repeats=4)
    threaded = World(**NOISY)
    # Each ticket's four calls in order in one job; the jobs of all tickets interleave freely.
    jobs = list(TICKETS)
    random.Random(1).shuffle(jobs)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(zip(jobs, pool.map(
            lambda t: [category_of(threaded.respond("task", triage_messages(t))) for _ in range(4)], jobs),
            strict=True))
    assert results == sequential


def test_regress_plants_a_fixed_share_of_wrong_answers_on_non_borderline_inputs() -> None:
    clean = ask_all(world_asker(World()), repeats=2)
    regressed_world = World(regress=0.25)
    regressed = ask_all(world_asker(regressed_world), repeats=2)
    changed = {t for t in TICKETS if regressed[t] != clean[t]}
    assert 4 <= len(changed) <= 16
    # Wrong on every call, and never a borderline input (noise is 0 here, so those stay clean too).
    assert all(regressed[t][0] == regressed[t][1] != true_category(t) for t in changed)
    assert not changed & borderline_tickets(regressed_world.noise)
    assert ask_all(world_asker(World(regress=0.25)), repeats=2) == regressed


def test_the_judge_and_the_reflector_are_never_noisy() -> None:
    shaky = World(noise=1.0, borderline=1.0, regress=1.0, seed=1)
    with dspy.context(lm=world.scripted_lm("reflection", shaky)):
        new = InstructionProposer()({"p": INSTRUCTION}, {"p": FAILING[:1]}, ["p"])["p"]
    assert new == f"{INSTRUCTION}\n{RULES['damage-on-arrival']}"
    judge = dspy.Signature("criteria: str, reference: str, response: str -> verdicts: list[dict]")
    messages = dspy.ChatAdapter().format(judge, demos=[], inputs={
        "criteria": json.dumps([{"name": "correct", "description": "The category is right."}]),
        "reference": json.dumps({"category": "claims"}), "response": json.dumps({"category": "claims"})})
    assert [shaky.respond("judge", messages) for _ in range(5)] == [World().respond("judge", messages)] * 5
    assert '"score": 1.0' in World().respond("judge", messages)


def test_noise_is_read_from_the_environment_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEPA_TEST_NOISE", "noise=0.5, borderline=0.25, seed=7")
    assert World().noise == world.Noise(**NOISY)
    assert ask_all(world_asker(World())) == ask_all(world_asker(World(**NOISY)))
    monkeypatch.setenv("GEPA_TEST_NOISE", "noise=0.5,temperature=1")
    with pytest.raises(ValueError, match=r"GEPA_TEST_NOISE: expected key=value with a key among noise, borderline, "
                                         r"regress, seed, got 'temperature=1'"):
        World()
    with pytest.raises(ValueError, match=r"noise must be within \[0, 1\], got 1.5"):
        World(noise=1.5)


def http_asker(base_url: str) -> Any:
    def ask(messages: list[dict[str, Any]]) -> str:
        status, reply = post(f"{base_url}/chat/completions", {"model": "task", "messages": messages})
        assert status == 200, reply
        return str(reply["choices"][0]["message"]["content"])

    return ask


def test_the_http_server_honours_the_same_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = ask_all(world_asker(World(**NOISY)), repeats=3)
    with ScriptedServer(World(**NOISY)) as server:
        assert ask_all(http_asker(server.base_url), repeats=3) == expected
    # The standalone server (what a conftest or a subprocess starts) reads GEPA_TEST_NOISE.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "GEPA_TEST_NOISE": "noise=0.5,seed=7"}
    process = subprocess.Popen([sys.executable, "-m", "world.server"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        assert ask_all(http_asker(process.stdout.readline().strip()), repeats=3) == expected
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


# --------------------------------------------------------------------------- blocking


def test_a_blocking_world_holds_every_call_after_n_task_calls_until_released(tmp_path: Path) -> None:
    import threading

    marker = tmp_path / "held"
    block = world.Block(after=2, marker=marker, seconds=30)
    w = World(block=block)
    ticket = TICKETS[0]
    assert category_of(w.respond("task", triage_messages(ticket))) == "billing"
    assert w.respond("judge", [{"role": "user", "content": "hi"}])  # other roles do not use up the task calls
    assert category_of(w.respond("task", triage_messages(ticket))) == "billing"
    assert not marker.exists()
    errors: list[BaseException] = []

    def third_call() -> None:
        try:
            w.respond("task", triage_messages(ticket))
        except BaseException as error:  # the thread reports whatever it got
            errors.append(error)

    thread = threading.Thread(target=third_call)
    thread.start()
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists() and thread.is_alive() and block.held == 1  # written while the call is held
    block.release()
    thread.join(timeout=10)
    assert [type(e) for e in errors] == [world.Blocked]
    with pytest.raises(world.Blocked):  # and nothing answers from now on, of any role
        w.respond("reflection", [{"role": "user", "content": "hi"}])


def test_a_held_call_over_http_is_a_dropped_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEPA_TEST_BLOCK_AFTER", "1")
    monkeypatch.setenv("GEPA_TEST_BLOCK_MARKER", str(tmp_path / "held"))
    monkeypatch.setenv("GEPA_TEST_BLOCK_SECONDS", "0")  # let held calls go at once
    with ScriptedServer() as server:
        assert server.world.block == world.Block(after=1, marker=tmp_path / "held", seconds=0.0)
        ask = http_asker(server.base_url)
        assert category_of(ask(triage_messages(TICKETS[0]))) == "billing"
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            ask(triage_messages(TICKETS[0]))
    assert (tmp_path / "held").exists()


def test_a_project_compiled_on_the_clean_world_fails_its_gate_on_a_regressed_one(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import TriageProject

    monkeypatch.delenv("GEPA_TEST_NOISE", raising=False)
    project = TriageProject(pytester)
    project.compile().assert_outcomes(passed=1)
    project.run().assert_outcomes(passed=1)
    # The conftest's scripted LMs are built inside the run, so they read the knob from the environment.
    # Every input but the borderline quarter answered wrong: a regression no verdict can call noise.
    monkeypatch.setenv("GEPA_TEST_NOISE", "regress=1")
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["GateFailure: gepa gate failed for test_triage.py::test_triage_prompt*"])
