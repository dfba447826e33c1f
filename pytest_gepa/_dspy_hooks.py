"""The dspy callback class behind ``UsageMeter``; kept apart because it subclasses a dspy type."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dspy.utils.callback import BaseCallback

if TYPE_CHECKING:
    from pytest_gepa.lms import UsageMeter


class RoleMeter(BaseCallback):
    """Counts one role's LM calls into a ``UsageMeter``; shared by every copy of the LM."""

    def __init__(self, meter: UsageMeter, role: str) -> None:
        self.meter = meter
        self.role = role

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self.meter.started(self.role)

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        self.meter.ended(self.role, exception)

    def __deepcopy__(self, memo: dict[int, Any]) -> RoleMeter:
        # Programs are deep-copied by dspy and GEPA; the meter must stay the one shared counter.
        return self
