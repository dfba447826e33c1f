"""The cassette keyed on the whole request: what changes a key, what never reaches the file, and a
replay that asks the wrapped LM nothing. The wrapped LM here is a stand-in that counts."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from pytest_gepa.cassette import Cassette, CassetteMissError, cassette_path, wrap
from pytest_gepa.cassette.lm import CassetteLM
from pytest_gepa.errors import register_secret

ENDPOINT = "http://10.20.30.40:8123/v1"
API_KEY = "sk-cassette-SECRET-0123456789"
HEADER_VALUE = "hdr-cassette-SECRET-value"
AWS_SECRET = "aws-cassette-SECRET-value"
PROMPT_SECRET = "prompt-cassette-SECRET-value"


class CountingLM:
    """An inner LM that answers ``answer N`` for its N-th call and counts every question asked of it."""

    model = "openai/counting"
    model_type = "chat"

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs: dict[str, Any] = dict(kwargs)
        self.calls: list[dict[str, Any]] = []
        self.capability_questions = 0

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> list[str]:
        self.calls.append({"prompt": prompt, "messages": messages, **kwargs})
        return [f"answer {len(self.calls)}"]

    def _asked(self) -> None:
        self.capability_questions += 1

    @property
    def supports_function_calling(self) -> bool:
        self._asked()
        return True

    @property
    def supports_reasoning(self) -> bool:
        self._asked()
        return False

    @property
    def supports_response_schema(self) -> bool:
        self._asked()
        return True

    @property
    def supported_params(self) -> set[str]:
        self._asked()
        return {"response_format", "temperature"}

    def copy(self, **kwargs: Any) -> CountingLM:
        return CountingLM(**{**self.kwargs, **kwargs})

    def dump_state(self) -> dict[str, Any]:
        return {"model": self.model}


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
        {"role": "tool", "tool_call_id": "call_1", "name": "lookup", "content": "shipped"},
    ]


def _recorded(tmp_path: Path, *calls: dict[str, Any], inner: CountingLM | None = None) -> Cassette:
    """A cassette recorded from ``calls`` (keyword arguments of one LM call each), saved and read back."""
    cassette = Cassette(tmp_path / "t.cassette.jsonl", target="test_x.py::test_y")
    lm = wrap(inner or CountingLM(), role="task", cassette=cassette, replay=False)
    for call in calls:
        lm(**call)
    cassette.save()
    return Cassette.load(cassette.path, target="test_x.py::test_y")


def _replayer(cassette: Cassette, inner: CountingLM | None = None) -> CassetteLM:
    return wrap(inner or CountingLM(), role="task", cassette=cassette, replay=True)


def test_an_image_part_changes_the_key(tmp_path: Path) -> None:
    recorded = dict(messages=_user(_text("What is in this picture?"), _image("AAAA")))
    cassette = _recorded(tmp_path, recorded)
    replay = _replayer(cassette)
    assert replay(**recorded) == ["answer 1"]
    with pytest.raises(CassetteMissError, match="no recorded answer for a task LM call"):
        replay(messages=_user(_text("What is in this picture?"), _image("BBBB")))


def test_a_tool_call_changes_the_key(tmp_path: Path) -> None:
    cassette = _recorded(tmp_path, dict(messages=_tool_turn(order=1)))
    replay = _replayer(cassette)
    assert replay(messages=_tool_turn(order=1)) == ["answer 1"]
    with pytest.raises(CassetteMissError):
        replay(messages=_tool_turn(order=2))


@pytest.mark.parametrize("where", ["call", "lm"])
def test_an_unknown_sampling_key_changes_the_key(tmp_path: Path, where: str) -> None:
    messages = [{"role": "user", "content": "Say hi."}]
    if where == "call":
        cassette = _recorded(tmp_path, dict(messages=messages, frequency_penalty=0.0))
        replay = _replayer(cassette)
        assert replay(messages=messages, frequency_penalty=0.0) == ["answer 1"]
        with pytest.raises(CassetteMissError):
            replay(messages=messages, frequency_penalty=1.5)
    else:
        cassette = _recorded(tmp_path, dict(messages=messages), inner=CountingLM(logit_bias={"50256": -100}))
        assert _replayer(cassette, CountingLM(logit_bias={"50256": -100}))(messages=messages) == ["answer 1"]
        with pytest.raises(CassetteMissError):
            _replayer(cassette, CountingLM(logit_bias={"50256": 100}))(messages=messages)


def test_transport_settings_and_credentials_do_not_change_the_key(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "Say hi."}]
    inner = CountingLM(api_key=API_KEY, api_base=ENDPOINT, timeout=3.0, num_retries=5, temperature=0.0)
    cassette = _recorded(tmp_path, dict(messages=messages, cache=True), inner=inner)
    # Replay runs without the key, against no endpoint, with other client settings.
    elsewhere = CountingLM(api_base="http://127.0.0.1:9/v1", timeout=60.0, temperature=0.0)
    assert _replayer(cassette, elsewhere)(messages=messages) == ["answer 1"]


def test_credentials_and_the_endpoint_never_reach_the_file(tmp_path: Path) -> None:
    register_secret(PROMPT_SECRET)
    inner = CountingLM(api_key=API_KEY, api_base=ENDPOINT, base_url=ENDPOINT, extra_headers={"X-Token": HEADER_VALUE},
                       headers={"Authorization": f"Bearer {HEADER_VALUE}"}, aws_secret_access_key=AWS_SECRET,
                       my_service_auth_token=HEADER_VALUE, temperature=0.7, max_tokens=64, max_completion_tokens=64)
    cassette = _recorded(tmp_path, dict(messages=[{"role": "user", "content": f"My password is {PROMPT_SECRET}."}]),
                         inner=inner)
    text = cassette.path.read_text()
    for secret in (API_KEY, ENDPOINT, HEADER_VALUE, AWS_SECRET, PROMPT_SECRET):
        assert secret not in text, secret
    (line,) = cassette.entries.values()
    # What changes the answer stays: a deny-list, not an allow-list.
    assert line["request"]["params"] == {"temperature": 0.7, "max_tokens": 64, "max_completion_tokens": 64}
    assert line["request"]["messages"] == [{"role": "user", "content": "My password is ***."}]


def test_replay_asks_the_inner_lm_nothing(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "Say hi."}]
    cassette = _recorded(tmp_path, dict(messages=messages))
    inner = CountingLM()
    replay = _replayer(cassette, inner)
    # What the model supported when recorded, answered from the cassette (dspy.LM would ask litellm).
    assert (replay.supports_function_calling, replay.supports_reasoning, replay.supports_response_schema,
            replay.supported_params) == (True, False, True, {"response_format", "temperature"})
    assert replay(messages=messages) == ["answer 1"]
    with pytest.raises(CassetteMissError):
        replay(messages=[{"role": "user", "content": "Say bye."}])
    assert inner.calls == [] and inner.capability_questions == 0
    # A cassette with nothing recorded for this model: the safe answer is "unsupported", still no question.
    empty = _replayer(Cassette(tmp_path / "empty.cassette.jsonl"), inner)
    assert (empty.supports_function_calling, empty.supports_response_schema, empty.supported_params) == (False, False, set())
    assert inner.capability_questions == 0


def test_a_session_wide_wrapper_follows_the_current_cassette(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "Say hi."}]
    current: list[Cassette | None] = [Cassette(tmp_path / "a.cassette.jsonl", target="test_a.py::test_a")]
    inner = CountingLM()
    recorder = wrap(inner, role="judge", cassette=lambda: current[0], replay=False)
    recorder(messages=messages)
    current[0] = Cassette(tmp_path / "b.cassette.jsonl", target="test_b.py::test_b")
    recorder(messages=messages)
    current[0] = None  # between tests, or a test with no cassette: passes through, unrecorded
    recorder(messages=messages)
    assert len(inner.calls) == 3

    replay = wrap(CountingLM(), role="judge", cassette=lambda: current[0], replay=True)
    with pytest.raises(CassetteMissError, match=r"a judge LM call to 'openai/counting' under --gepa-replay, but no "
                                                r"cassette is open for it"):
        replay(messages=messages)


def test_wrapping_a_cassette_lm_wraps_its_inner_lm(tmp_path: Path) -> None:
    inner = CountingLM()
    session_wide = Cassette(tmp_path / "session.cassette.jsonl")
    target = Cassette(tmp_path / "target.cassette.jsonl")
    twice = wrap(wrap(inner, role="task", cassette=session_wide, replay=False), role="task", cassette=target,
                 replay=False)
    assert twice.inner is inner
    twice(messages=[{"role": "user", "content": "Say hi."}])
    assert len(inner.calls) == 1 and len(target.entries) == 1 and not session_wide.entries


def test_a_saved_cassette_reads_like_a_source_file(tmp_path: Path) -> None:
    path = cassette_path(tmp_path / "gepa_artifacts" / "test_x" / "test_y.json")
    assert path.name == "test_y.cassette.jsonl"
    leftover = path.parent / f".{path.name}.abc.tmp"  # a write that was killed
    leftover.parent.mkdir(parents=True)
    leftover.write_text("half")
    cassette = Cassette(path)
    lm = wrap(CountingLM(), role="task", cassette=cassette, replay=False)
    for word in ("one", "two", "three"):
        lm(messages=[{"role": "user", "content": word}])
    cassette.save()
    # Committed next to the tests: readable by everyone, sorted, one JSON object per line.
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not leftover.exists()
    lines = path.read_text().splitlines()
    assert lines == sorted(lines, key=lambda line: json.loads(line)["key"])
    assert all(line == json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False) for line in lines)
    assert Cassette.load(path).text() == path.read_text()
