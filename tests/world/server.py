"""The scripted world as an OpenAI-compatible HTTP server on 127.0.0.1.

Covers the real network path (litellm or DSPy's native client -> HTTP -> JSON) that the
in-process engine skips. The role is the request's model name, so one server plays every
model: ``dspy.LM("openai/task", api_base=server.base_url, api_key="sk-test")``.

Run standalone (from the repository root) with::

    PYTHONPATH=tests python -m world.server --port 8765 [--latency 0.05] [--noise "noise=0.2,seed=7"] \
        [--world triage8]

The world it serves honours ``GEPA_TEST_NOISE``, ``GEPA_TEST_BLOCK_AFTER`` (see ``noise.py``) and
``GEPA_TEST_WORLD`` (the task it plays: ``triage``, or ``triage8``, see ``triage8.py``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any

from .engine import TASK_ENV, TASKS, World, word_count
from .noise import NOISE_ENV, Blocked, Noise

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ChatRequest:
    """One parsed ``POST /v1/chat/completions``; what a per-role hook gets to look at."""

    role: str
    model: str  # as sent, e.g. "task"
    messages: list[dict[str, str]]
    body: dict[str, Any]
    number: int  # 1-based count of this role's requests, including this one


@dataclass
class HTTPReply:
    status: int
    body: Any  # JSON-serializable; a list of chunks for a server-sent event stream
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    drop: bool = False  # close the connection without sending anything (status and body unused)


# A hook sees each request for its role before the world does, and may answer instead by
# returning a reply (a 429, a 500, a malformed body...) or let it through with None. This
# is the seam for fault injection (see faults.py: install_faults, clear_faults).
Hook = Callable[[ChatRequest], "HTTPReply | None"]


def _content_text(content: Any) -> str:
    """OpenAI message content: a string, or a list of parts of which we read the text ones."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _error(status: int, message: str, kind: str = "invalid_request_error") -> HTTPReply:
    return HTTPReply(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})


class ScriptedServer:
    """Serves ``world`` at ``base_url`` (``http://127.0.0.1:PORT/v1``) from a background thread.

    ``latency`` (seconds slept per chat call) may be changed while running. ``calls`` counts
    chat requests per role; ``hooks`` maps a role (or ``"*"``) to a :data:`Hook`. ``port=0``
    picks a free port. ``keep_alive=True`` lets clients reuse connections (see ``_Handler``).
    """

    def __init__(
        self, world: World | None = None, latency: float = 0.0, port: int = 0, keep_alive: bool = False
    ) -> None:
        self.world = world if world is not None else World()
        self.latency = latency
        self.keep_alive = keep_alive
        self.calls: Counter[str] = Counter()
        self.hooks: dict[str, Hook] = {}
        self._port = port
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> ScriptedServer:
        if self._httpd is not None:
            raise RuntimeError("ScriptedServer is already running")
        httpd = ThreadingHTTPServer((HOST, self._port), _Handler)
        httpd.daemon_threads = True  # a keep-alive client must not hold up stop()
        httpd.scripted = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scripted-llm-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("ScriptedServer is not running; call start() or use it as a context manager")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    # ----------------------------------------------------------------- requests

    def handle(self, method: str, path: str, raw: bytes) -> HTTPReply:
        """Answer one HTTP request; free of sockets so it can be exercised directly."""
        path = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path in ("/v1/models", "/models"):
            roles = sorted({role for skill in self.world.skills for role in skill.roles})
            return HTTPReply(200, {"object": "list", "data": [{"id": r, "object": "model"} for r in roles]})
        if method != "POST" or path not in ("/v1/chat/completions", "/chat/completions"):
            return _error(404, f"No route for {method} {path}", "not_found_error")
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            model = str(body.get("model") or "")
            messages = [
                {"role": str(m.get("role", "user")), "content": _content_text(m.get("content"))}
                for m in body.get("messages") or []
            ]
        except (ValueError, AttributeError) as exc:
            return _error(400, f"Malformed request: {exc}")
        if not model or not messages:
            return _error(400, "A chat completion needs a model and messages")
        return self._chat(body, model, messages)

    def _chat(self, body: dict[str, Any], model: str, messages: list[dict[str, str]]) -> HTTPReply:
        role = model.rsplit("/", 1)[-1]  # "openai/task" if a client forgets to strip its prefix
        with self._lock:
            self.calls[role] += 1
            number = self.calls[role]
        request = ChatRequest(role=role, model=model, messages=messages, body=body, number=number)
        if self.latency > 0:
            time.sleep(self.latency)
        hook = self.hooks.get(role) or self.hooks.get("*")
        if hook is not None:
            override = hook(request)
            if override is not None:
                return override
        try:
            text = self.world.respond(role, messages)
        except Blocked:
            # A call the blocking world held and let go: the client sees its connection close.
            return HTTPReply(0, None, drop=True)
        return self.completion(request, text)

    def completion(self, request: ChatRequest, text: str) -> HTTPReply:
        """A well-formed chat completion answering ``request`` with ``text`` (for hooks, too)."""
        prompt_tokens = sum(word_count(m["content"]) for m in request.messages)
        completion_tokens = word_count(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        ident = f"chatcmpl-scripted-{next(self._ids)}"
        created = int(time.time())
        n = max(1, int(request.body.get("n") or 1))
        if request.body.get("stream"):
            return HTTPReply(200, list(_stream_chunks(ident, created, request, text, usage)), stream=True)
        return HTTPReply(
            200,
            {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": request.model,
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                    for i in range(n)
                ],
                "usage": usage,
            },
        )


def _stream_chunks(
    ident: str, created: int, request: ChatRequest, text: str, usage: dict[str, int]
) -> Iterable[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": request.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield chunk({"role": "assistant", "content": text}, None)
    yield chunk({}, "stop")
    if (request.body.get("stream_options") or {}).get("include_usage"):
        yield {**chunk({}, None), "choices": [], "usage": usage}


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 with a Content-Length on every reply. Unless the server is told to keep
    # connections alive, each reply says "Connection: close": litellm caches its HTTP clients
    # for the whole process, and a pooled keep-alive socket to a server that is long gone
    # surfaces later as a ResourceWarning (an error under -W error) when the cache drops it.
    protocol_version = "HTTP/1.1"
    timeout = 30  # drop idle keep-alive connections eventually

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._send(self._scripted().handle("POST", self.path, self.rfile.read(length)))

    def do_GET(self) -> None:
        self._send(self._scripted().handle("GET", self.path, b""))

    def _scripted(self) -> ScriptedServer:
        return self.server.scripted  # type: ignore[attr-defined]

    def _send(self, reply: HTTPReply) -> None:
        if reply.drop:
            # Not a byte of reply: the client sees the connection close (a transport error).
            self.close_connection = True
            return
        if reply.stream:
            payload = "".join(f"data: {json.dumps(c)}\n\n" for c in reply.body) + "data: [DONE]\n\n"
            data, content_type = payload.encode(), "text/event-stream"
        else:
            body = reply.body
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            content_type = "application/json"
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if not self._scripted().keep_alive:
            self.send_header("Connection", "close")  # also makes the handler close its end
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request would drown test and benchmark output


def prime_litellm() -> None:
    """Run litellm's (and dspy's native engine's) whole call path once (``Predict`` with ChatAdapter and JSONAdapter over HTTP).

    Call it at session start, before any in-process ``pytester`` run. litellm imports much of
    itself (and of openai, httpx and pydantic) lazily on its first call, and a pytester run
    drops every module first imported inside it from ``sys.modules`` again. A later litellm
    call then re-imports them next to the survivors and breaks in odd ways ("No package
    metadata was found for httpx2", "Expected an instance of httpx.Client", a pydantic
    ``ReadOnly`` UserWarning). Modules imported before the first pytester run survive them all.
    """
    import dspy

    with ScriptedServer() as server:
        # Both engines dspy picks between: litellm, and its native one (what "auto" serves this with).
        for engine in ("litellm", "auto"):
            lm = dspy.LM(
                "openai/task",
                api_base=server.base_url,
                api_key="sk-test",
                engine=engine,
                cache=False,
                num_retries=0,
            )
            for adapter in (dspy.ChatAdapter(), dspy.JSONAdapter()):
                with dspy.context(lm=lm, adapter=adapter):
                    dspy.Predict("question -> answer")(question="ping")
            lm.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m world.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to sleep per chat call")
    parser.add_argument("--noise", type=Noise.parse, default=None, metavar="SPEC",
                        help=f'e.g. "noise=0.2,borderline=0.25,seed=7" (default: ${NOISE_ENV}, else none)')
    parser.add_argument("--world", choices=TASKS, default=None,
                        help=f"the task the world plays (default: ${TASK_ENV}, else triage)")
    args = parser.parse_args(argv)

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # stop cleanly on SIGTERM too

    signal.signal(signal.SIGTERM, terminate)
    server = ScriptedServer(World(noise=args.noise, task=args.world), latency=args.latency, port=args.port).start()
    try:
        # Announced inside the try: a launcher may stop us as soon as it has read this line.
        print(server.base_url, flush=True)  # the one line a launcher needs to read
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
