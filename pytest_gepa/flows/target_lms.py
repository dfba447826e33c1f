"""A target's LMs: each role's LM metered under its role and, with a cassette, seen through it.

The models recorded in an artifact's provenance are the ones this target asked for, not whatever
the process used last.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_gepa.usage import ROLES, RoleCounter, UsageMeter, cost_usd

if TYPE_CHECKING:
    from pytest_gepa.artifact.model import RoleUsage
    from pytest_gepa.cassette import Cassette


class TargetLMs:
    """The task, reflection and judge LMs of one target."""

    def __init__(self, *, get_lm: Callable[[str], Any], meter: UsageMeter, cassette: Cassette | None,
                 replay: bool, nodeid: str) -> None:
        self._get_lm = get_lm
        self.meter = meter
        self._cassette = cassette
        self._replay = replay
        self._nodeid = nodeid
        self._wrapped: dict[str, Any] = {}
        self._seen: dict[tuple[int, str], Any] = {}
        self.models: dict[str, str] = {}

    def raw(self, role: str) -> Any:
        """The role's LM as the fixture gives it (a rubric chooses between it and its own model)."""
        return self._get_lm(role)

    def wrap_judge(self, lm: Any) -> Any:
        """``gepa_wrap_lm``: the one callable a rubric wraps its chosen judge with, for this target."""
        return self.wrap(lm, "judge")

    def lm(self, role: str) -> Any:
        """The role's LM, metered; with a cassette, answered from or recorded into it."""
        if role not in self._wrapped:
            self._wrapped[role] = self.wrap(self._get_lm(role), role)
        return self._wrapped[role]

    def wrap(self, lm: Any, role: str) -> Any:
        """Any LM this target uses (a rubric's own judge too): metered, and through the cassette.
        The same LM always comes back as the same wrapped object (rubrics cache verdicts per LM)."""
        from pytest_gepa.cassette import unwrap, wrap

        lm = unwrap(lm)  # a fixture's LM seen through the test's cassette: this target's cassette instead
        key = (id(lm), role)
        if key not in self._seen:
            metered = self.meter.attach(lm, role)
            self.models.setdefault(role, str(getattr(metered, "model", "")))
            self._seen[key] = metered if self._cassette is None else wrap(
                metered, role=role, cassette=self._cassette, replay=self._replay, target=self._nodeid)
        return self._seen[key]

    def model(self, role: str) -> str | None:
        model = getattr(self.lm(role), "model", None)
        return None if model is None else str(model)

    def resolved_models(self, program: Any, metric: Any) -> dict[str, str | None]:
        """The model each role of a compile of ``program`` scored by ``metric`` talks to: the task
        LM's (with any predictor's own LM beside it), the reflection LM's, and the judge's when the
        metric is a rubric (the model its file names, else the judge LM's); None for no judge."""
        task = self.model("task")
        own = sorted({f"{name}={lm.model}" for name, predictor in program.named_predictors()
                      if (lm := getattr(predictor, "lm", None)) is not None and getattr(lm, "model", None)})
        judge: str | None = None
        if getattr(metric, "uses_judge", False):
            named = getattr(metric, "judge_model", None)
            judge = named if isinstance(named, str) else str(getattr(self.raw("judge"), "model", None))
        return {"task": "; ".join([str(task), *own]), "reflection": self.model("reflection"), "judge": judge}

    def describe(self, role: str) -> str:
        """``the task model 'openai/x' at http://...``: what a person checks when it fails."""
        from pytest_gepa.cassette import unwrap

        lm = self.lm(role)
        model = str(getattr(lm, "model", "?"))
        kwargs = getattr(unwrap(lm), "kwargs", {}) or {}  # behind a cassette, the endpoint is the wrapped LM's
        base = kwargs.get("api_base") or kwargs.get("base_url")
        if not base:
            # litellm reads an endpoint from <PROVIDER>_API_BASE / _BASE_URL when the LM names none.
            prefix = model.split("/", 1)[0].upper()
            base = os.environ.get(f"{prefix}_API_BASE") or os.environ.get(f"{prefix}_BASE_URL")
        return f"the {role} model {model!r}" + (f" at {base}" if base else "")

    def attach_task_lm(self, program: Any) -> None:
        """The returned program is ready to call: predictors without an LM get the task LM."""
        task_lm = self.lm("task")
        for _, predictor in program.named_predictors():
            if getattr(predictor, "lm", None) is None:
                predictor.lm = task_lm

    def cost(self, used: dict[str, RoleCounter]) -> float | None:
        """The USD cost of this usage, or None when a role that made calls has no known price."""
        costs = [cost_usd(self.models.get(role), used[role].prompt_tokens, used[role].completion_tokens)
                 for role in ROLES if used[role].calls]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    def usage_record(self, used: dict[str, RoleCounter]) -> dict[str, RoleUsage]:
        from pytest_gepa.artifact.model import RoleUsage

        return {
            role: RoleUsage(calls=used[role].calls, prompt_tokens=used[role].prompt_tokens,
                            completion_tokens=used[role].completion_tokens,
                            cost_usd=cost_usd(self.models.get(role), used[role].prompt_tokens,
                                              used[role].completion_tokens))
            for role in ROLES if used[role].calls
        }
