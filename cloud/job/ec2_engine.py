"""The one-machine engine: one EC2 instance, launched directly with the boot script as user-data.

The instance is the job's only machine: its id is the launch id, its state (EC2's) tells when
it is gone, and it writes its status, logs, plan and end document at the top of `out/`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..aws import compute, quotas, storage
from ..aws.presign import LIST_PAGE
from ..aws.session import AwsSettings
from ..cost import caps
from ..errors import CloudError, ErrorCode
from ..machine import contract
from .cloud_steps import BOOT_OVERHEAD_S, PackedScene
from .engine import EngineName, Fleet, ForgottenMachine, JobHost, Launched
from .poll_bounds import LogBudget
from .records import JobRecord, JobRequest, Stage

# EC2's listing lags a fresh launch by a little: "not found" this soon after it is "pending".
NOT_FOUND_GRACE_SECONDS = 120.0
GONE_STATES = ("shutting-down", "terminated", "stopped", "not-found")
END_DOCUMENTS = (
    ("done.json", Stage.DONE),
    ("error.json", Stage.FAILED),
    ("interrupted.json", Stage.INTERRUPTED),
)


class Ec2Engine:
    """One EC2 instance for the whole job."""

    name = EngineName.EC2
    end_grace_s = 0.0  # the machine powers itself off once its frames are up
    encodes_movie = True
    every_machine = "the machine"
    hands_out_frames = False  # one machine renders every frame: their order changes nothing
    stop_help = "Use Terminate in the jobs list, or stop it in the AWS console."
    list_page = LIST_PAGE  # keys per listing page (tests make it small)

    def __init__(self) -> None:
        self.last_state = "unknown"

    # --- launch ----------------------------------------------------------------------------
    def machine_cap_seconds(self, record: JobRecord) -> int:
        """One machine may spend the whole job's caps."""
        return caps.cap_seconds(record.max_cost, record.max_hours, record.price_per_hour, BOOT_OVERHEAD_S)

    def check_capacity(self, settings: AwsSettings, record: JobRecord, request: JobRequest) -> None:
        """Refuse before launching what AWS would refuse: a type not offered, a vCPU quota too low."""
        report = quotas.check_capacity(settings, record.instance_type, record.spot)
        if not report.fits:
            raise CloudError(report.message, report.action, code=report.code or ErrorCode.NO_CAPACITY)

    def spec_extras(self, settings: AwsSettings, record: JobRecord, expires: int) -> dict[str, Any]:
        """The pages of the listing of its upload marks, so a re-run skips every frame already
        uploaded."""
        marks = [contract.rendered_mark(f) for f in record.frames]
        prefix = contract.frame_marks_prefix(record.job_id)
        pages = storage.list_page_links(settings, record.bucket, prefix, marks, expires, page=self.list_page)
        return {"mark_list_urls": pages}

    def launch(
        self,
        settings: AwsSettings,
        record: JobRecord,
        request: JobRequest,
        packed: PackedScene,
        boot_script: str,
    ) -> Launched:
        launched = compute.launch(
            settings,
            job_id=record.job_id,
            instance_type=record.instance_type,
            user_data=boot_script,
            spot=record.spot,
        )
        pricing = "spot" if launched.spot else "on-demand"
        return Launched(
            launched.instance_id, launched.spot, f"Machine {launched.instance_id} requested ({pricing})."
        )

    # --- follow ----------------------------------------------------------------------------
    def outputs(self, job: JobHost) -> OneMachineOutputs:
        return OneMachineOutputs(job, self)

    def rendered_words(self, record: JobRecord) -> str:
        return f"{len(record.frames_done)} frames rendered"

    def fleet(self, settings: AwsSettings, record: JobRecord) -> Fleet:
        """The instance bills from its launch (the record's time: no request needed)."""
        return Fleet((time.time() - record.launched_at,), 1)

    def all_gone(self, settings: AwsSettings, record: JobRecord) -> bool:
        state = str(compute.describe(settings, record.launch_id).state) if record.launch_id else "unknown"
        if state == "not-found" and time.time() - record.launched_at < NOT_FOUND_GRACE_SECONDS:
            state = "pending"
        self.last_state = state
        return state in GONE_STATES

    # --- stop ------------------------------------------------------------------------------
    def stop(self, settings: AwsSettings, record: JobRecord, reason: str) -> None:
        if record.launch_id:
            compute.terminate(settings, record.launch_id)

    def wait_until_ended(self, settings: AwsSettings, record: JobRecord, cancel: threading.Event) -> None:
        return None  # the machine ends on its own once its frames are up

    def machines_left(self, settings: AwsSettings, record: JobRecord) -> list[str]:
        """The job's machines not yet ended (found by its tag, whatever the record says)."""
        return compute.find_job_instances(settings, record.job_id)

    def end_machines_left(self, settings: AwsSettings, record: JobRecord, left: list[str]) -> None:
        for instance_id in left:
            compute.terminate(settings, instance_id)


def find_forgotten(
    settings: AwsSettings, regions: list[str], is_job_live: Callable[[str], bool]
) -> list[ForgottenMachine]:
    """Instances tagged by us, in every region given, whose job is not live here."""
    return [
        ForgottenMachine(EngineName.EC2, orphan.region, orphan.instance_id, orphan.job_id)
        for orphan in compute.find_orphans_in(settings, regions, is_job_live)
    ]


def stop_forgotten(settings: AwsSettings, machine: ForgottenMachine) -> None:
    compute.terminate(settings.in_region(machine.region), machine.launch_id)


class OneMachineOutputs:
    """What the one machine writes at the top of `out/`: status, log chunks, plan, the farm's
    environment, the quote, frames and files, and one end document."""

    def __init__(self, job: JobHost, engine: Ec2Engine) -> None:
        self.job = job
        self.engine = engine
        self._last_status: dict[str, Any] = {}
        self._report: contract.StatusReport | None = None  # the last status, validated
        self._log_marker = ""
        self._plan_etag = ""  # the plan.json last read: read again only once it changed

    def poll(self) -> None:
        job, rec = self.job, self.job.record
        status = job.read_document("status.json", contract.MAX_JSON_BYTES)
        if status and status != self._last_status:
            self._last_status = status
            report = job.accept(
                f"status.json #{contract.clean_text(status.get('seq'), 20)}",
                lambda: contract.parse_status(status, rec.frames),
            )
            if report is not None:
                self._report = report
                job.apply_status(report)
        self._log_marker = read_log_chunks(job, self._log_marker)
        self._read_plan()
        job.download_outputs()
        job.check_environment()
        if rec.quote_first and not rec.quote:
            job.check_quote()

    def _read_plan(self) -> None:
        """plan.json, read when it changed (its ETag, by a HEAD): once per Blender run, where
        reading it every poll cost a 14 MB plan 0.6 s a poll. A refused plan waits for a new one."""
        job, rec = self.job, self.job.record
        etag = job.steps.etag(job.settings, rec.bucket, contract.out_prefix(rec.job_id) + "plan.json")
        if not etag or etag == self._plan_etag:
            return
        self._plan_etag = etag
        plan = job.read_document("plan.json", contract.MAX_PLAN_BYTES)
        if plan:
            frames = job.accept("plan.json", lambda: contract.parse_plan(plan, rec.frames))
            job.plan.update(frames or {})

    def final_state(self) -> tuple[Stage, dict[str, Any]] | None:
        for name, stage in END_DOCUMENTS:
            data = self.job.read_document(
                name, contract.MAX_PLAN_BYTES
            )  # they list frames, as plan.json does
            if data is not None:
                return stage, data
        return None

    def working(self) -> int:
        return 1

    def machine_rows(self) -> list[dict[str, Any]]:
        report = self._report
        return [
            {
                "machine": 0,
                "state": report.state if report else "starting",
                "frame": report.frame if report else None,
                "seconds_per_frame": report.seconds_per_frame if report else None,
            }
        ]

    def gone_error(self) -> CloudError:
        return CloudError(
            "The render machine stopped before it finished, without saying why.",
            "Relaunch the missing frames; the frames already rendered are kept.",
            code=ErrorCode.INSTANCE_GONE,
            detail=f"instance {self.job.record.launch_id} is {self.engine.last_state}",
        )


def read_log_chunks(job: JobHost, marker: str) -> str:
    """The job-level log chunks after `marker` into the job log, a bounded number of lines
    (poll_bounds.LogBudget); returns the new marker."""
    rec = job.record
    budget = LogBudget()
    for key, text in job.steps.new_log_chunks(
        job.settings, rec.bucket, rec.job_id, marker, contract.MAX_LOG_CHUNK_BYTES
    ):
        marker = key
        if text is None:
            job.refuse(key, f"a log chunk over {contract.MAX_LOG_CHUNK_BYTES} bytes")
            continue
        job.post_log(tuple(contract.clean_log_line(line) for line in budget.take(text.splitlines())))
    if budget.left_out():
        job.post_log((budget.left_out(),))
    return marker
