"""Recording: what one LM call costs the calling thread behind the plugin, against the same plain dspy call.

One process, the scripted server answering over HTTP from a thread of it. The same ``dspy.ChainOfThought``
program calls, in turn, on a new ticket each time so that no answer comes from a cassette:

* ``plain``: the user's own ``dspy.LM`` (``_lms.bench_lm``, dspy's default engine), as a script calls it;
* ``metered``: that LM with the plugin's usage meter attached, as every compile and gate calls it;
* ``recorded``: metered and behind a cassette in record mode, as ``--gepa-record`` calls it, with
  the cassette's file written at the end (its share counted per call).

Measured is the calling thread's CPU time (``time.thread_time``): the server's thread and the network
wait are left out, so the rows show what the plugin adds to a call, not the LM's latency. Rounds
alternate the three, so a busy moment of the machine falls on all of them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from _harness import Context, log, ratio, scripted_server

TITLE = "recording: an LM call behind the plugin's meter and cassette vs the same plain dspy call"
CALLS = 200  # per side and round
ROUNDS = 5


def bench(ctx: Context) -> None:
    import dspy
    from _lms import bench_lm

    from pytest_gepa.cassette import wrap
    from pytest_gepa.cassette.store import Cassette
    from pytest_gepa.usage import UsageMeter

    class Triage(dspy.Signature):
        """Classify the support ticket into one of: billing, claims, technical, account, shipping."""

        ticket: str = dspy.InputField()
        category: str = dspy.OutputField()

    program = dspy.ChainOfThought(Triage)
    with scripted_server(0.0) as (server, _requests):
        def plain() -> Any:
            return bench_lm("task", server.base_url)

        def metered() -> Any:
            return UsageMeter().attach(bench_lm("task", server.base_url), "task")

        cassettes: list[Cassette] = []

        def recorded() -> Any:
            cassette = Cassette(ctx.workdir / f"recording-{len(cassettes)}.cassette.jsonl")
            cassettes.append(cassette)
            return wrap(metered(), role="task", cassette=cassette, replay=False)

        sides: dict[str, Callable[[], Any]] = {"plain": plain, "metered": metered, "recorded": recorded}
        per_call: dict[str, list[float]] = {name: [] for name in sides}
        for number in range(ROUNDS):
            for name, build in sides.items():
                lm = build()
                with dspy.context(lm=lm):
                    program(ticket=f"warm-up {name} {number}")  # the first call builds the engine
                    started = time.thread_time()
                    for call in range(CALLS):
                        program(ticket=f"round {number}, {name} call {call}: my invoice is wrong")
                    if name == "recorded":
                        cassettes[-1].save()
                per_call[name].append((time.thread_time() - started) / CALLS)
            log(f"recording round {number}: " + ", ".join(f"{n} {v[-1] * 1e3:.2f} ms" for n, v in per_call.items()))

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1e3:.2f} [{min(values) * 1e3:.2f}-{max(values) * 1e3:.2f}] ms"

    sec = "7 recording"
    base = statistics.median(per_call["plain"])
    for name, text in (("metered", "CPU per LM call, metered (every compile and gate)"),
                       ("recorded", "CPU per LM call, metered and recorded (--gepa-record), cassette written")):
        report_ratio = ratio(statistics.median(per_call[name]), base)
        ctx.report.add(sec, f"{text}, vs the plain dspy call", ms(per_call[name]), ms(per_call["plain"]),
                       report_ratio, "-", None)
