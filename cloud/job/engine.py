"""The seam between a job's life and where its machines run.

`JobRunner` (job_thread.py) packs, uploads, follows, caps and ends a job the same way whatever
runs it; an `Engine` is the one part that differs: one EC2 instance (ec2_engine.py) or an AWS
Batch array job of N machines (batch_engine.py). Which one is chosen once, at submit
(`records.engine_name_for`), and stored by name in the job record and in the machine's spec; everything
after reads that name (engines.py makes the engine for a record).

An engine launches, tells the state of its machines (running time, how many are live, whether
all are gone), stops them with a reason, lists the ones still live after a job ended, and makes
the reader of what its machines write (`MachineOutputs`): one machine writes at the top of
`out/`, many machines each in `out/machines/<index>/`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .records import EngineName

if TYPE_CHECKING:
    from threading import Event

    from ..aws.session import AwsSettings
    from ..aws.storage import TooLarge
    from ..errors import CloudError
    from ..machine import contract
    from .cloud_steps import CloudSteps, PackedScene
    from .events import EventQueue
    from .records import JobRecord, JobRequest, Stage

T = TypeVar("T")


@dataclass(frozen=True)
class Launched:
    """What a launch started: its id (an EC2 instance's, or the Batch array job's), whether it
    runs on spot, and the sentence the job log says of it."""

    launch_id: str
    spot: bool
    said: str


@dataclass(frozen=True)
class Fleet:
    """The machines as the cost cap counts them: each one's running seconds so far, and how
    many are live now (each may bill the stop margin while it is being terminated)."""

    running_s: tuple[float, ...]
    live: int


@dataclass(frozen=True)
class ForgottenMachine:
    """A machine of ours (or a Batch job standing for its machines) still running although its
    job is over or unknown here: what Find Forgotten Machines lists and can stop."""

    engine: EngineName
    region: str
    launch_id: str
    job_id: str


class JobHost(Protocol):
    """What a reader of machine outputs may use of the job that follows it (JobRunner)."""

    record: JobRecord
    settings: AwsSettings
    events: EventQueue
    steps: CloudSteps
    plan: dict[str, int]

    def log(self, line: str) -> None: ...
    def post_log(self, lines: tuple[str, ...]) -> None: ...
    def refuse(self, key: str, reason: str) -> None: ...
    def read_document(self, name: str, max_bytes: int) -> dict[str, Any] | None: ...
    def document(self, name: str, body: bytes | TooLarge | None, max_bytes: int) -> dict[str, Any] | None: ...
    def accept(self, key: str, parse: Callable[[], T]) -> T | None: ...
    def apply_status(self, status: contract.StatusReport) -> None: ...
    def set_stage(self, stage: Stage, message: str) -> None: ...
    def note_frame_seconds(self, measured: dict[int, float]) -> None: ...
    def note_end_frame_seconds(self, data: dict[str, Any], where: str) -> None: ...
    def download_outputs(self) -> None: ...
    def check_environment(self) -> None: ...
    def check_quote(self) -> None: ...


class MachineOutputs(Protocol):
    """Reads what the machines wrote (through the contract) for one job."""

    def poll(self) -> None:
        """One look at everything the machines wrote, frames and files included."""

    def final_state(self) -> tuple[Stage, dict[str, Any]] | None:
        """How the job ended by what the machines wrote (the end document's data), or None."""

    def working(self) -> int:
        """Machines still rendering: with N, a frame is due N times as often."""

    def machine_rows(self) -> list[dict[str, Any]]:
        """One row per machine for the panel: machine, state, frame, seconds_per_frame."""

    def gone_error(self) -> CloudError:
        """Why the job ends when every machine is gone without its final documents."""


class Engine(Protocol):
    """Where a job's machines run. One engine object per job (it may keep what it last saw)."""

    name: EngineName
    # Every frame is in: how long the machines get to end on their own (writing their last
    # documents) before they are stopped.
    end_grace_s: float
    encodes_movie: bool  # whether the machine can make the movie (it holds every frame)
    every_machine: str  # "the machine" / "every machine", for the job log and the panel
    # Frames claimed one by one by many machines: the order they go out in sets the makespan,
    # so a first submission maps which take longest (cloud/cost/cost_map.py).
    hands_out_frames: bool
    stop_help: str  # what the artist can do when stopping failed

    def machine_cap_seconds(self, record: JobRecord) -> int:
        """Seconds each machine may render (its dead-man timer, counted after boot)."""

    def check_capacity(self, settings: AwsSettings, record: JobRecord, request: JobRequest) -> None:
        """Refuse before launching what AWS would refuse or kill (quota, type, memory)."""

    def spec_extras(self, settings: AwsSettings, record: JobRecord, expires: int) -> dict[str, Any]:
        """The spec fields this engine's machines need (links to their marks, claims)."""

    def launch(
        self,
        settings: AwsSettings,
        record: JobRecord,
        request: JobRequest,
        packed: PackedScene,
        boot_script: str,
    ) -> Launched: ...

    def outputs(self, job: JobHost) -> MachineOutputs: ...

    def rendered_words(self, record: JobRecord) -> str:
        """What the panel says of a job done ("12 frames rendered on 3 machines")."""

    def fleet(self, settings: AwsSettings, record: JobRecord) -> Fleet: ...

    def all_gone(self, settings: AwsSettings, record: JobRecord) -> bool:
        """Whether every machine has ended (a fresh launch not yet listed counts as live)."""

    def stop(self, settings: AwsSettings, record: JobRecord, reason: str) -> None: ...

    def wait_until_ended(self, settings: AwsSettings, record: JobRecord, cancel: Event) -> None:
        """Give the machines `end_grace_s` to end on their own."""

    def machines_left(self, settings: AwsSettings, record: JobRecord) -> list[str]:
        """The job's machines still live (by its tag, whatever the record says)."""

    def end_machines_left(self, settings: AwsSettings, record: JobRecord, left: list[str]) -> None: ...
