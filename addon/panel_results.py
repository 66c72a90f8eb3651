"""What the panel's own buttons found, kept as typed Python objects: the machines still running
with no job (Check for Forgotten Machines), the scene check's findings (Check Scene) and the
estimate (Estimate).

They live in Python beside the WindowManager, one set per window manager, never saved in a
.blend (DESIGN.md rule 8): text on the WindowManager would have to be parsed back (an
"id:job:region" list, an icon by "BLOCK" at the start, a regex for the s/frame of one line).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import bpy

if TYPE_CHECKING:  # the job side is imported off the main thread first (pump._import_job_side)
    from ..cloud.cost.estimate import Estimate
    from ..cloud.job.account_jobs import SharedJob
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


@dataclass(frozen=True)
class MadeFrom:
    """The settings a finding or an estimate was made from: when the scene's differ, what was
    found no longer holds and is shown as out of date (never quoted as if it did)."""

    region: str
    spot: bool
    frames: int  # -1: the frame list does not parse
    samples: int
    resolution: str  # "1920x1080"
    engine: str
    split: bool  # one frame's samples split over machines (the probe renders fixed samples)
    instance_type: str
    machines: int

    def words(self, names: list[str]) -> str:
        """These fields as an artist reads them: "12 frames, 32 samples"."""
        said = {
            "region": self.region,
            "spot": "spot" if self.spot else "on-demand",
            "frames": f"{self.frames} frame{'s' * (self.frames != 1)}",
            "samples": f"{self.samples} samples",
            "resolution": self.resolution,
            "engine": self.engine.replace("BLENDER_", "").title(),
            "split": "its samples split over machines" if self.split else "one frame per machine",
            "instance_type": self.instance_type,
            "machines": f"{self.machines} machine{'s' * (self.machines != 1)}",
        }
        return ", ".join(said[name] for name in names)


# What an estimate depends on: every machine type is estimated, and the machine count only
# matters where it splits a still (the probe then renders a fixed number of samples).
ESTIMATE_DEPENDS = ("frames", "samples", "resolution", "engine", "split", "region", "spot")
FINDINGS_DEPENDS = tuple(f.name for f in fields(MadeFrom))


def made_from(scene: Any = None) -> MadeFrom:
    """The scene's settings now, as a finding or an estimate made now would be made from."""
    from ..cloud.errors import CloudError
    from ..cloud.job.records import splits_by_samples
    from .settings import frames_for, scene_samples, snapshot

    scene = scene or bpy.context.scene
    settings = snapshot(scene)
    try:
        frames = len(frames_for(scene, settings))
    except CloudError:
        frames = -1
    render = scene.render
    percent = settings.resolution_percentage or render.resolution_percentage
    engine = str(render.engine)
    return MadeFrom(
        region=settings.region,
        spot=settings.use_spot,
        frames=frames,
        samples=settings.samples or scene_samples(scene),
        resolution=f"{render.resolution_x * percent // 100}x{render.resolution_y * percent // 100}",
        engine=engine,
        split=settings.machines > 1 and splits_by_samples(frames, engine),
        instance_type=settings.instance_type,
        machines=settings.machines,
    )


def changed(then: MadeFrom | None, now: MadeFrom, depends: tuple[str, ...]) -> list[str]:
    """The fields `depends` names that differ between then and now ([] when unknown)."""
    if then is None:
        return []
    return [name for name in depends if getattr(then, name) != getattr(now, name)]


@dataclass(frozen=True)
class DeleteAsk:
    """What Delete Cloud Data would delete, counted, for the Jobs list to ask about before it does."""

    job_id: str
    label: str  # "c5.2xlarge · 24 frames · 14:05"
    files: int
    size: int  # bytes

    @property
    def text(self) -> str:
        if not self.files:
            return f"{self.label} has no files left in your bucket: forget the job here?"
        return (
            f"Delete {self.files} file{'s' * (self.files != 1)} ({size_words(self.size)}) of "
            f"{self.label} from your bucket? The frames on this computer stay."
        )


def size_words(size: int) -> str:
    """ "140 MB", "3.2 GB", "12 KB"."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} bytes"


@dataclass
class PanelResults:
    """The latest answer of each button, for the panel and the confirmation to read."""

    forgotten: list[ForgottenMachine] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    estimate: list[EstimateRow] = field(default_factory=list)
    estimate_note: str = ""  # instead of rows: "Rendering a test tile..." or what went wrong
    estimate_all: list[Estimate] = field(default_factory=list)  # every type: rows follow the choice
    estimate_made_from: MadeFrom | None = None
    findings_made_from: MadeFrom | None = None
    delete_ask: DeleteAsk | None = None  # counted by Delete Cloud Data, waiting for a yes
    elsewhere: list[SharedJob] = field(default_factory=list)  # Jobs on Other Computers: no record here

    @property
    def estimating(self) -> bool:
        return self.estimate_note == ESTIMATING

    def rows(self, chosen: str) -> list[EstimateRow]:
        """The estimate's rows with `chosen` first and marked (the machine type may have changed
        since: every type was estimated)."""
        return estimate_rows(self.estimate_all, chosen) if self.estimate_all else self.estimate

    def estimate_stale(self, now: MadeFrom | None = None) -> str:
        """ "Estimate made for 12 frames, 32 samples: press Estimate again." when the settings
        changed since it was made; "" while it holds."""
        if not (self.estimate or self.estimate_all) or self.estimate_made_from is None:
            return ""
        differ = changed(self.estimate_made_from, now or made_from(), ESTIMATE_DEPENDS)
        if not differ:
            return ""
        return f"Estimate made for {self.estimate_made_from.words(differ)}: press Estimate again."

    def findings_stale(self, now: MadeFrom | None = None) -> str:
        """ "Check Scene made for g4dn.xlarge: press Check Scene again." or ""."""
        if not self.findings or self.findings_made_from is None:
            return ""
        differ = changed(self.findings_made_from, now or made_from(), FINDINGS_DEPENDS)
        if not differ:
            return ""
        return f"Check Scene made for {self.findings_made_from.words(differ)}: press Check Scene again."

    def estimate_for(self, instance_type: str) -> EstimateRow | None:
        """The row of `instance_type`, if the estimate has it and still holds for the scene's
        settings (an out-of-date figure is never quoted)."""
        if self.estimate_stale():
            return None
        return next(
            (row for row in self.rows(instance_type) if row.estimate.instance_type == instance_type), None
        )


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
