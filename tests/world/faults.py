"""Deterministic fault plans for :class:`~world.server.ScriptedServer`, one per role.

A plan answers a chosen share of one role's chat calls with a fault instead of the world's reply::

    plan = install_faults(server, role="task", kind="http_500", first=3)   # calls 1-3 fail
    install_faults(server, role="task", kind="http_429", every=2)           # calls 2, 4, 6, ...
    install_faults(server, role="reflection", kind="garbage", always=True)
    install_faults(server, role="task", kind="drop", calls={1, 5})
    clear_faults(server)                                                     # every role healthy again

Kinds (:data:`KINDS`):

* ``http_429``: a rate-limit error with a ``Retry-After`` header (``retry_after`` seconds, default 0);
* ``http_500``: a server error (a ``Retry-After`` header only when ``retry_after`` is given);
* ``hang``: no reply until ``hang_seconds`` have passed (or the plan is cleared), then the
  connection is dropped: past any sane client timeout, the client times out;
* ``drop``: the connection is closed without a byte of reply;
* ``context_window``: a 400 saying the prompt is longer than the model's context window (what
  OpenAI sends: code ``context_length_exceeded``);
* ``content_policy``: a 400 saying the prompt was refused by the provider's safety system (code
  ``content_policy_violation``);
* ``garbage``: a well-formed 200 completion whose content is in no adapter's format
  (``content`` overrides the text);
* ``reply``: a well-formed 200 completion whose content is ``content``: a string, or a function of
  the request (see :func:`answer_fields` for a reply in the format the prompt's adapter parses).

Decisions depend only on the plan's call number: the role's calls counted from 1 since the plan
was installed (so a plan switched on mid-run starts afresh), never on randomness or timing. With
calls in flight in parallel which *request* gets a given number depends on arrival order, but how
many calls fail does not; a client retrying ``r`` times always gets through ``first=r`` faults.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from .engine import parse_prompt, render
from .server import ChatRequest, HTTPReply, ScriptedServer

KINDS = ("http_429", "http_500", "context_window", "content_policy", "hang", "drop", "garbage", "reply")

# Text a confused model might send: no `[[ ## field ## ]]` markers, no JSON object.
GARBAGE = "I'm sorry, as a large language model I cannot categorize this ticket. Have a nice day!"

Content = str | Callable[[ChatRequest], str]


@dataclass
class FaultPlan:
    """One role's faults: which of its calls fail, and how. Also the server hook that applies them.

    ``seen`` counts the role's calls since installation; ``injected`` lists the call numbers that got
    a fault, in the order they arrived.
    """

    role: str
    kind: str
    first: int | None = None
    every: int | None = None
    always: bool = False
    calls: frozenset[int] | None = None
    retry_after: float | None = None
    hang_seconds: float = 30.0
    content: Content | None = None
    server: ScriptedServer | None = None
    seen: int = 0
    injected: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _released: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        chosen = [name for name, value in (("first", self.first), ("every", self.every),
                                           ("always", self.always or None), ("calls", self.calls))
                  if value is not None]
        if len(chosen) != 1:
            raise ValueError(f"choose exactly one of first=, every=, always=True or calls=; got {chosen or 'none'}")
        for name, value in (("first", self.first), ("every", self.every)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.kind == "reply" and self.content is None:
            raise ValueError("kind='reply' needs content= (a string or a function of the request)")
        if self.kind in ("garbage", "reply") and self.server is None:
            raise ValueError(f"kind={self.kind!r} needs the server, to build its completion")

    @property
    def count(self) -> int:
        """How many calls got a fault so far."""
        with self._lock:
            return len(self.injected)

    def hits(self, number: int) -> bool:
        """Whether the plan's call ``number`` (1-based) gets the fault."""
        if self.always:
            return True
        if self.first is not None:
            return number <= self.first
        if self.every is not None:
            return number % self.every == 0
        return self.calls is not None and number in self.calls

    def release(self) -> None:
        """Let hung calls go (they then drop their connection) and make later hangs return at once."""
        self._released.set()

    def __call__(self, request: ChatRequest) -> HTTPReply | None:
        with self._lock:
            self.seen += 1
            number = self.seen
            if not self.hits(number):
                return None
            self.injected.append(number)
        return self._fault(request, number)

    def _fault(self, request: ChatRequest, number: int) -> HTTPReply:
        where = f"{self.role} call {number}"
        if self.kind == "http_429":
            seconds = 0 if self.retry_after is None else self.retry_after
            return _error(429, f"Rate limit reached (scripted fault, {where}).", "rate_limit_error",
                          {"Retry-After": _seconds(seconds)})
        if self.kind == "http_500":
            headers = {} if self.retry_after is None else {"Retry-After": _seconds(self.retry_after)}
            return _error(500, f"The server had an error (scripted fault, {where}).", "server_error", headers)
        if self.kind == "context_window":
            return _error(400, f"This model's maximum context length is 8192 tokens. However, your messages resulted "
                          f"in 9000 tokens (scripted fault, {where}).", "invalid_request_error", {},
                          code="context_length_exceeded")
        if self.kind == "content_policy":
            return _error(400, f"Your request was rejected as a result of our safety system (scripted fault, {where}).",
                          "invalid_request_error", {}, code="content_policy_violation")
        if self.kind == "hang":
            self._released.wait(self.hang_seconds)
            return HTTPReply(0, None, drop=True)
        if self.kind == "drop":
            return HTTPReply(0, None, drop=True)
        assert self.server is not None  # checked at construction
        content = GARBAGE if self.content is None else self.content
        text = content(request) if callable(content) else content
        return self.server.completion(request, text)


def install_faults(server: ScriptedServer, *, role: str, kind: str, first: int | None = None,
                   every: int | None = None, always: bool = False, calls: Collection[int] | None = None,
                   retry_after: float | None = None, hang_seconds: float = 30.0,
                   content: Content | None = None) -> FaultPlan:
    """Put a fault plan on ``role`` (``"*"``: every role without its own hook), replacing the role's
    previous hook, and return it. Exactly one of ``first``, ``every``, ``always``, ``calls`` says
    which of the role's calls (counted from 1 from now on) fail."""
    plan = FaultPlan(role=role, kind=kind, first=first, every=every, always=always,
                     calls=frozenset(calls) if calls is not None else None, retry_after=retry_after,
                     hang_seconds=hang_seconds, content=content, server=server)
    previous = server.hooks.get(role)
    if isinstance(previous, FaultPlan):
        previous.release()
    server.hooks[role] = plan
    return plan


def clear_faults(server: ScriptedServer, role: str | None = None) -> None:
    """Remove the fault plans of ``role`` (of every role when None) and let their hung calls go.
    Hooks that are not fault plans stay."""
    for name, hook in list(server.hooks.items()):
        if isinstance(hook, FaultPlan) and (role is None or name == role):
            del server.hooks[name]
            hook.release()


def faults_of(server: ScriptedServer) -> dict[str, FaultPlan]:
    """The fault plans installed now, by role."""
    return {name: hook for name, hook in server.hooks.items() if isinstance(hook, FaultPlan)}


def answer_fields(**values: Any) -> Callable[[ChatRequest], str]:
    """Content for ``kind="reply"``: these output field values, rendered in the format the prompt's
    adapter parses (ChatAdapter markers or a JSON object), e.g. a one-word instruction for the
    reflection LM: ``answer_fields(new_instruction="Classify.")``."""

    def reply(request: ChatRequest) -> str:
        return render(parse_prompt(request.role, request.messages), values)

    return reply


def _error(status: int, message: str, kind: str, headers: dict[str, str], code: str | None = None) -> HTTPReply:
    return HTTPReply(status, {"error": {"message": message, "type": kind, "param": None, "code": code}}, headers)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
