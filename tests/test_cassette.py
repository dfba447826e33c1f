"""The cassette as a dspy engine, keyed on the whole canonical request: what changes a key, what never
reaches the file, keys that match the cassettes recorded before it was an engine, and a replay that
asks the wrapped LM nothing. The wrapped LM is a real ``dspy.LM``: on an engine that counts, or over
HTTP against the scripted server."""

from __future__ import annotations

import json
import stat
import warnings
from pathlib import Path
from typing import Any

import dspy
import pytest
import world
from dspy.lm15 import Message, Request, Response, TextPart, Usage, request_from_openai_chat

from pytest_gepa.cassette import Cassette, CassetteMissError, cassette_path, unwrap, wrap
from pytest_gepa.cassette.request import request_document
from pytest_gepa.cassette.store import request_key
from pytest_gepa.errors import register_secret

MODEL = "openai/counting"
API_KEY = "sk-cassette-SECRET-0123456789"
HEADER_VALUE = "hdr-cassette-SECRET-value"
PROMPT_SECRET = "prompt-cassette-SECRET-value"


class CountingEngine:
    """Answers ``answer N`` for its N-th call and counts every question asked of it."""

    def __init__(self) -> None:
        self.calls: list[Request] = []
        self.capability_questions = 0

    def complete(self, request: Request) -> Response:
        self.calls.append(request)
        return Response(id=None, model=request.model, message=Message.assistant([TextPart(f"answer {len(self.calls)}")]),
                        finish_reason="stop", usage=Usage(input_tokens=3, output_tokens=2))

    def stream(self, request: Request) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _asked(self, answer: Any) -> Any:
        self.capability_questions += 1
        return answer

    @property
    def supports_function_calling(self) -> bool:
        return bool(self._asked(True))

    @property
    def supports_reasoning(self) -> bool:
        return bool(self._asked(False))

    @property
    def supports_response_schema(self) -> bool:
        return bool(self._asked(True))

    @property
    def supported_params(self) -> set[str]:
        return set(self._asked({"response_format", "temperature"}))


def counting_lm(**kwargs: Any) -> Any:
    return dspy.LM(MODEL, engine=CountingEngine(), cache=False, num_retries=0, **kwargs)


def _body(messages: list[dict[str, Any]], **params: Any) -> Request:
    return request_from_openai_chat({"model": MODEL, "messages": messages, **params})


def _user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Answer the question."}, {"role": "user", "content": list(parts)}]


def _image(data: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _tool_turn(order: int) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": json.dumps({"order": order})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "shipped"},
    ]


def _text_of(answer: Any) -> str:
    return "".join(part.text for part in answer.message.parts) if isinstance(answer, Response) else answer[0]


def _recorded(tmp_path: Path, *calls: Any, inner: Any = None) -> Cassette:
    """A cassette recorded from ``calls`` (a Request or a prompt each), saved and read back."""
    cassette = Cassette(tmp_path / "t.cassette.jsonl", target="test_x.py::test_y")
    lm = wrap(inner if inner is not None else counting_lm(), role="task", cassette=cassette, replay=False)
    for call in calls:
        lm(call)
    cassette.save()
    return Cassette.load(cassette.path, target="test_x.py::test_y")


def _replayer(cassette: Cassette, inner: Any = None) -> Any:
    return wrap(inner if inner is not None else counting_lm(), role="task", cassette=cassette, replay=True)


def test_an_image_part_changes_the_key(tmp_path: Path) -> None:
    recorded = _body(_user(_text("What is in this picture?"), _image("AAAA")))
    cassette = _recorded(tmp_path, recorded)
    replay = _replayer(cassette)
    assert _text_of(replay(recorded)) == "answer 1"
    with pytest.raises(CassetteMissError, match="no recorded answer for a task LM call"):
        replay(_body(_user(_text("What is in this picture?"), _image("BBBB"))))


def test_a_tool_call_changes_the_key(tmp_path: Path) -> None:
    cassette = _recorded(tmp_path, _body(_tool_turn(order=1)))
    replay = _replayer(cassette)
    assert _text_of(replay(_body(_tool_turn(order=1)))) == "answer 1"
    with pytest.raises(CassetteMissError):
        replay(_body(_tool_turn(order=2)))


@pytest.mark.parametrize("where", ["call", "lm"])
def test_an_unknown_sampling_key_changes_the_key(tmp_path: Path, where: str) -> None:
    messages = [{"role": "user", "content": "Say hi."}]
    if where == "call":
        cassette = _recorded(tmp_path, _body(messages, frequency_penalty=0.0))
        replay = _replayer(cassette)
        assert _text_of(replay(_body(messages, frequency_penalty=0.0))) == "answer 1"
        with pytest.raises(CassetteMissError):
            replay(_body(messages, frequency_penalty=1.5))
    else:
        cassette = _recorded(tmp_path, "Say hi.", inner=counting_lm(logit_bias={"50256": -100}))
        assert _replayer(cassette, counting_lm(logit_bias={"50256": -100}))("Say hi.") == ["answer 1"]
        with pytest.raises(CassetteMissError):
            _replayer(cassette, counting_lm(logit_bias={"50256": 100}))("Say hi.")


def test_keys_match_the_cassettes_recorded_before_the_engine(tmp_path: Path) -> None:
    """The document of a canonical request is the one the adapter's ``messages=`` call keyed on: the
    keys below are those of lines written by pytest-gepa's earlier cassette LM (its request_of)."""
    system = {"role": "system", "content": "Classify the ticket."}
    user = {"role": "user", "content": "[[ ## ticket ## ]]\nMy card was charged twice."}
    old = {"model": "openai/task", "messages": [system, user], "params": {"max_tokens": 384, "temperature": 0.0}}
    request = request_from_openai_chat({"model": "openai/task", "messages": [system, user], "max_tokens": 384,
                                        "temperature": 0.0})
    assert request_document(request) == old
    assert request_key(request_document(request)) == request_key(old) == "8ac0a483adf43ee4aa02912d60b26b0f"
    # dspy's JSONAdapter: a pydantic output model, sent as a strict JSON schema, keys as the model did.
    schema = {"additionalProperties": False, "properties": {"answer": {"title": "Answer", "type": "integer"}},
              "required": ["answer"], "title": "DSPyProgramOutputs", "type": "object"}
    structured = request_from_openai_chat({"model": "openai/task", "messages": [user], "response_format": {
        "type": "json_schema", "json_schema": {"name": "DSPyProgramOutputs", "schema": schema, "strict": True}}})
    assert request_document(structured)["params"] == {
        "response_format": {"pydantic_model": "DSPyProgramOutputs", "schema": schema}}


def test_transport_settings_and_credentials_do_not_change_the_key(tmp_path: Path,
                                                                  scripted_server: world.ScriptedServer) -> None:
    inner = dspy.LM("openai/task", api_key=API_KEY, api_base=scripted_server.base_url, timeout=3.0, num_retries=5,
                    temperature=0.0, cache=False)
    cassette = _recorded(tmp_path, "Say hi.", inner=inner)
    assert scripted_server.calls["task"] == 1
    # Replay runs without the key, against no endpoint, with other client settings.
    elsewhere = dspy.LM("openai/task", api_base="http://127.0.0.1:9/v1", timeout=60.0, temperature=0.0)
    assert len(_replayer(cassette, elsewhere)("Say hi.")) == 1
    assert scripted_server.calls["task"] == 1


def test_credentials_and_the_endpoint_never_reach_the_file(tmp_path: Path,
                                                           scripted_server: world.ScriptedServer) -> None:
    register_secret(PROMPT_SECRET)
    inner = dspy.LM("openai/task", api_key=API_KEY, api_base=scripted_server.base_url,
                    extra_headers={"X-Token": HEADER_VALUE}, temperature=0.7, max_tokens=64, cache=False)
    cassette = _recorded(tmp_path, f"My password is {PROMPT_SECRET}.", inner=inner)
    text = cassette.path.read_text()
    for secret in (API_KEY, scripted_server.base_url, HEADER_VALUE, PROMPT_SECRET):
        assert secret not in text, secret
    (line,) = cassette.entries.values()
    # What changes the answer stays: a deny-list, not an allow-list.
    assert line["request"]["params"] == {"temperature": 0.7, "max_tokens": 64}
    assert line["request"]["messages"] == [{"role": "user", "content": "My password is ***."}]


def test_replay_asks_the_inner_lm_nothing(tmp_path: Path) -> None:
    cassette = _recorded(tmp_path, "Say hi.")
    inner = counting_lm()
    engine = inner.engine
    replay = _replayer(cassette, inner)
    # What the model supported when recorded, answered from the cassette (dspy.LM would ask its catalog).
    assert (replay.supports_function_calling, replay.supports_reasoning, replay.supports_response_schema,
            replay.supported_params) == (True, False, True, {"response_format", "temperature"})
    assert replay("Say hi.") == ["answer 1"]
    with pytest.raises(CassetteMissError):
        replay("Say bye.")
    assert engine.calls == [] and engine.capability_questions == 0
    # A cassette with nothing recorded for this model: the safe answer is "unsupported", still no question.
    empty = _replayer(Cassette(tmp_path / "empty.cassette.jsonl"), inner)
    assert (empty.supports_function_calling, empty.supports_response_schema, empty.supported_params) == (False, False, set())
    assert engine.capability_questions == 0


def test_a_program_records_and_replays_through_dspys_adapters(tmp_path: Path) -> None:
    """Predict over the wrapper, with both adapters: the replayed prediction is the recorded one, and
    nothing on the way raises a dspy DeprecationWarning."""
    scripted = world.World()
    cassette = Cassette(tmp_path / "p.cassette.jsonl", target="test_p")
    recorder = wrap(world.scripted_lm("task", scripted, temperature=0.0), role="task", cassette=cassette, replay=False)
    program = dspy.Predict("ticket -> category")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        recorded = []
        for adapter in (dspy.ChatAdapter(), dspy.JSONAdapter()):
            with dspy.context(lm=recorder, adapter=adapter):
                recorded.append(program(ticket="My card was charged twice.").category)
        cassette.save()
        replay = wrap(world.scripted_lm("task", scripted, temperature=0.0), role="task",
                      cassette=Cassette.load(cassette.path),
                      replay=True)
        replayed = []
        for adapter in (dspy.ChatAdapter(), dspy.JSONAdapter()):
            with dspy.context(lm=replay, adapter=adapter):
                replayed.append(program(ticket="My card was charged twice.").category)
    assert replayed == recorded and scripted.calls["task"] == 2


def test_a_session_wide_wrapper_follows_the_current_cassette(tmp_path: Path) -> None:
    current: list[Cassette | None] = [Cassette(tmp_path / "a.cassette.jsonl", target="test_a.py::test_a")]
    inner = counting_lm()
    recorder = wrap(inner, role="judge", cassette=lambda: current[0], replay=False)
    recorder("Say hi.")
    current[0] = Cassette(tmp_path / "b.cassette.jsonl", target="test_b.py::test_b")
    recorder("Say hi.")
    current[0] = None  # between tests, or a test with no cassette: passes through, unrecorded
    recorder("Say hi.")
    assert len(inner.engine.calls) == 3

    replay = wrap(counting_lm(), role="judge", cassette=lambda: current[0], replay=True)
    with pytest.raises(CassetteMissError, match=r"a judge LM call to 'openai/counting' under --gepa-replay, but no "
                                                r"cassette is open for it"):
        replay("Say hi.")


def test_wrapping_a_cassette_lm_wraps_its_inner_lm(tmp_path: Path) -> None:
    inner = counting_lm()
    session_wide = Cassette(tmp_path / "session.cassette.jsonl")
    target = Cassette(tmp_path / "target.cassette.jsonl")
    twice = wrap(wrap(inner, role="task", cassette=session_wide, replay=False), role="task", cassette=target,
                 replay=False)
    assert unwrap(twice) is inner
    twice("Say hi.")
    assert len(inner.engine.calls) == 1 and len(target.entries) == 1 and not session_wide.entries


def test_a_saved_cassette_reads_like_a_source_file(tmp_path: Path) -> None:
    path = cassette_path(tmp_path / "gepa_artifacts" / "test_x" / "test_y.json")
    assert path.name == "test_y.cassette.jsonl"
    leftover = path.parent / f".{path.name}.abc.tmp"  # a write that was killed
    leftover.parent.mkdir(parents=True)
    leftover.write_text("half")
    cassette = Cassette(path)
    lm = wrap(counting_lm(), role="task", cassette=cassette, replay=False)
    for word in ("one", "two", "three"):
        lm(word)
    cassette.save()
    # Committed next to the tests: readable by everyone, sorted, one JSON object per line.
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not leftover.exists()
    lines = path.read_text().splitlines()
    assert lines == sorted(lines, key=lambda line: json.loads(line)["key"])
    assert all(line == json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False) for line in lines)
    assert Cassette.load(path).text() == path.read_text()


def test_a_request_made_again_while_recording_is_a_fresh_call_and_replays_in_turn(tmp_path: Path) -> None:
    # The draws of one example are the same request made again: each must reach the LM (or a noisy
    # model looks steady to the compile's decisions and to the draws the artifact records), and a
    # replay must serve the answers the recording saw, in turn, then from the first again.
    inner = counting_lm()
    cassette = Cassette(tmp_path / "draws.cassette.jsonl")
    recorder = wrap(inner, role="task", cassette=cassette, replay=False)
    recorded = [recorder("Classify: my card was charged twice.") for _ in range(3)]
    assert recorded == [["answer 1"], ["answer 2"], ["answer 3"]] and len(inner.engine.calls) == 3
    cassette.save()
    (call,) = [line for line in map(json.loads, cassette.path.read_text().splitlines()) if "response" in line]
    assert call["response"] == ["answer 1", "answer 2", "answer 3"]

    replay = _replayer(Cassette.load(cassette.path), counting_lm())
    replayed = [replay("Classify: my card was charged twice.") for _ in range(4)]
    assert replayed == [["answer 1"], ["answer 2"], ["answer 3"], ["answer 1"]]
