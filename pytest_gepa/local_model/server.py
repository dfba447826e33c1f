"""The llama.cpp server process: one ``python -m llama_cpp.server`` per model file per process.

A server starts under a lock on the first call that needs it, and stops at session end
(``plugin.pytest_unconfigure`` calls :func:`stop_all`) and, as a backstop, at interpreter exit. It
imports neither dspy nor the ``local`` extra: the extra runs in the child process.
"""

from __future__ import annotations

import atexit
import contextlib
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
from typing import IO

# The module, not its names: tests replace packages.missing_packages and friends in one place.
from pytest_gepa.local_model import packages
from pytest_gepa.local_model.packages import LocalModelError, ModelSpec

# Model loading takes about a second for the 135M model; a slow disk or a large file takes longer.
START_TIMEOUT_S = 120.0
STDERR_TAIL_LINES = 20
PORT_ATTEMPTS = 3
# Room for GEPA's reflection prompt (the instruction, a few examples, their feedback) and the answer.
CONTEXT_TOKENS = 8192


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` of a server's log, indented for an error message."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no output)"
    kept = text.strip().splitlines()[-lines:]
    return "\n".join("    " + line for line in kept) or "    (no output)"


# Only ever 127.0.0.1, and never through a proxy from the environment.
_loopback = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def serves(base_url: str, served_name: str) -> bool:
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
                return cls._start(model, served_name, free_port(), timeout=timeout)
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
        while not serves(server.base_url, served_name):
            if process.poll() is not None:
                tail = log_tail(server.log_path)
                server.stop()
                if "address already in use" in tail.lower():
                    raise _PortTaken
                raise LocalModelError(
                    f"The embedded model server for '{model}' exited with code {process.returncode} "
                    f"before it was ready. Its last output:\n{tail}"
                )
            if time.monotonic() > deadline:
                tail = log_tail(server.log_path)
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


def running_servers() -> dict[Path, LocalServer]:
    """The servers this process started and has not stopped, by model file (a copy)."""
    with _lock:
        return dict(_servers)


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
    missing = packages.missing_packages(spec)
    if missing:
        raise LocalModelError(packages.missing_extra_message(spec, missing))
    path = packages.model_path(spec)
    server = _servers.get(path)
    if server is not None and server.alive():
        return server
    if server is not None:
        del _servers[path]
        tail = log_tail(server.log_path)
        server.stop()
        raise LocalModelError(f"The embedded model server for '{path}' died (exit code "
                              f"{server.process.returncode}). Its last output:\n{tail}")
    server = LocalServer.start(packages.model_file(spec), spec.served_name)
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
