"""Two knobs of the world that real models and real runs need: noise, and a run that stops dead.

**Noise.** Real models answer differently from call to call (sampling at temperature > 0). With
``Noise(noise=0.2, borderline=0.25, seed=7)`` a share ``borderline`` of task inputs is *borderline*
(chosen by a stable hash of the input text, so the same inputs in every run and every seed), and on
each call a borderline input is answered with a wrong category with probability ``noise``.
``regress=0.25`` plants a regression: that share of the other inputs is answered wrong on every call.
The draw for a call depends only on (seed, input, how many times this world was asked that input
before): the answers one input gets do not depend on how threads are scheduled. Only skills that say
what the right answer is (:meth:`~world.engine.Skill.truth`: the triage students) are noisy; the judge
and the reflector never are.

**Blocking.** ``Block(after=N, marker=path)`` lets N task calls through, then writes ``marker`` and
holds every further call (of any role) until :meth:`Block.release` or ``seconds`` have passed; a held
call then fails as a transport error, and so does every call after it. A test that must interrupt a run mid-compile waits for the marker,
a state certain to come, instead of racing the run to some line of output.

Both read the environment when a :class:`~world.engine.World` is built without them, so a pytester
project, a subprocess and ``python -m world.server`` all honour::

    GEPA_TEST_NOISE="noise=0.2,borderline=0.25,regress=0,seed=7"
    GEPA_TEST_BLOCK_AFTER=30  GEPA_TEST_BLOCK_MARKER=/tmp/blocked  [GEPA_TEST_BLOCK_SECONDS=120]
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from dspy import lm15

NOISE_ENV = "GEPA_TEST_NOISE"
BLOCK_AFTER_ENV = "GEPA_TEST_BLOCK_AFTER"
BLOCK_MARKER_ENV = "GEPA_TEST_BLOCK_MARKER"
BLOCK_SECONDS_ENV = "GEPA_TEST_BLOCK_SECONDS"


def unit(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``: the same in every process (no ``hash()`` salt)."""
    digest = hashlib.sha256("\0".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Noise:
    """How noisy the task model is; all zero (the default) is the deterministic world."""

    noise: float = 0.0  # per call: the chance a borderline input is answered wrong
    borderline: float = 0.25  # the share of inputs that are borderline
    regress: float = 0.0  # the share of the other inputs answered wrong on every call
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("noise", "borderline", "regress"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")

    @classmethod
    def parse(cls, spec: str) -> Noise:
        """``"noise=0.2,borderline=0.25,seed=7"``; keys left out keep their defaults."""
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, float | int] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise ValueError(f"{NOISE_ENV}: expected key=value with a key among {', '.join(known)}, "
                                 f"got {item!r} in {spec!r}")
            try:
                values[key] = int(text) if key == "seed" else float(text)
            except ValueError:
                raise ValueError(f"{NOISE_ENV}: {key} must be a number, got {text.strip()!r} in {spec!r}") from None
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Noise:
        spec = (os.environ if environ is None else environ).get(NOISE_ENV, "")
        return cls.parse(spec) if spec.strip() else cls()

    @property
    def active(self) -> bool:
        return (self.noise > 0 and self.borderline > 0) or self.regress > 0

    def is_borderline(self, key: str) -> bool:
        return unit("borderline", key) < self.borderline

    def is_regressed(self, key: str) -> bool:
        return not self.is_borderline(key) and unit("regress", key) < self.regress

    def answer(self, key: str, asked: int, *, given: str, truth: str, options: Sequence[str],
               stream: str | None = None) -> str:
        """The answer to the ``asked``-th (0-based) call on input ``key``, whose student said ``given``.

        ``stream`` (default: ``key``) names the sequence of calls ``asked`` counts in, when that is
        narrower than the input (the eight-rule world's calls per instruction and input)."""
        wrong = [option for option in options if option != truth]
        if not wrong:
            return given
        if self.is_regressed(key):
            return wrong[int(unit("regress-answer", key) * len(wrong))]
        if self.noise > 0 and self.is_borderline(key):
            draw = random.Random(f"{self.seed}\0{stream or key}\0{asked}")  # str seeds hash with sha512: stable
            if draw.random() < self.noise:
                return draw.choice(wrong)
        return given


class NoiseState:
    """A world's noise and how often it was asked each input (the per-input call number)."""

    def __init__(self, noise: Noise) -> None:
        self.noise = noise
        self._asked: Counter[str] = Counter()
        self._lock = threading.Lock()

    def ask(self, key: str) -> int:
        """Count a call on ``key``; how many calls on it came before this one."""
        with self._lock:
            asked = self._asked[key]
            self._asked[key] += 1
            return asked


class Blocked(lm15.TransportError):  # type: ignore[misc, unused-ignore]  # dspy untyped under --strict
    """A call the blocking world held and then let go: it never got an answer."""


@dataclass
class Block:
    """Let ``after`` task calls through, then hold every call; the first held one writes ``marker``."""

    after: int
    marker: Path | None = None
    seconds: float = 120.0
    task_calls: int = 0
    held: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _released: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Block | None:
        env = os.environ if environ is None else environ
        after = env.get(BLOCK_AFTER_ENV, "").strip()
        if not after:
            return None
        marker = env.get(BLOCK_MARKER_ENV, "").strip()
        return cls(after=int(after), marker=Path(marker) if marker else None,
                   seconds=float(env.get(BLOCK_SECONDS_ENV, "") or 120.0))

    def release(self) -> None:
        """Let every held call go. Each fails as :class:`Blocked`, and so does every later call: a
        released run gets no further, so what it leaves behind is what it had when it was stopped."""
        self._released.set()

    def enter(self, role: str) -> None:
        """Called before a call is answered: returns at once, or holds the call and raises Blocked."""
        with self._lock:
            if role == "task" and self.task_calls < self.after:
                self.task_calls += 1
                return
            if self.task_calls < self.after:
                return  # other roles run freely until the task calls are used up
            self.held += 1
            first = self.held == 1
        if first and self.marker is not None:
            # Written once the first call is really held, so the marker means "the run is stuck now".
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.write_text(f"held after {self.after} task calls; pid {os.getpid()}\n")
        self._released.wait(self.seconds)
        raise Blocked(f"the scripted world held this {role} call after {self.after} task calls and let it go")
