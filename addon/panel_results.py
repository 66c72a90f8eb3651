"""What the panel's own buttons found, kept as typed Python objects: the machines still running
with no job (Check for Forgotten Machines), the scene check's findings (Check Scene) and the
estimate (Estimate).

They live in Python beside the WindowManager, one set per window manager, never saved in a
.blend (DESIGN.md rule 8): text on the WindowManager would have to be parsed back (an
"id:job:region" list, an icon by "BLOCK" at the start, a regex for the s/frame of one line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import bpy

if TYPE_CHECKING:  # the job side is imported off the main thread first (pump._import_job_side)
    from ..cloud.cost.estimate import Estimate
    from ..cloud.job.engine import ForgottenMachine
    from ..cloud.pack.preflight import Finding


@dataclass(frozen=True)
class EstimateRow:
    """One machine type's estimate as the panel shows it: price and time, then the machine."""

    estimate: Estimate
    cost_and_time: str  # "$0.11, 12 min"
    machine: str  # "g4dn.xlarge [chosen], ~58 s/frame ($0.10-$0.13)"

    @property
    def text(self) -> str:
        return f"{self.cost_and_time}: {self.machine}"


@dataclass
class PanelResults:
    """The latest answer of each button, for the panel and the confirmation to read."""

    forgotten: list[ForgottenMachine] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    estimate: list[EstimateRow] = field(default_factory=list)
    estimate_note: str = ""  # instead of rows: "Rendering a test tile..." or what went wrong

    @property
    def estimating(self) -> bool:
        return self.estimate_note == ESTIMATING

    def estimate_for(self, instance_type: str) -> EstimateRow | None:
        """The row of `instance_type`, if the estimate shows it."""
        return next((row for row in self.estimate if row.estimate.instance_type == instance_type), None)


ESTIMATING = "Rendering a test tile..."

_by_window_manager: dict[int, PanelResults] = {}


def results() -> PanelResults:
    """This window manager's results (made empty on first use)."""
    key = bpy.context.window_manager.as_pointer()
    return _by_window_manager.setdefault(key, PanelResults())


def estimate_rows(estimates: list[Estimate], chosen: str) -> list[EstimateRow]:
    """The rows the panel shows: the chosen type first, then the cheapest and fastest few."""
    from ..cloud.cost import machine_facts

    return [
        EstimateRow(e, *machine_facts.estimate_parts(e, chosen))
        for e in machine_facts.shown_estimates(estimates, chosen)
    ]


def forget() -> None:
    _by_window_manager.clear()
