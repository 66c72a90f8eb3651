"""All of this Blender session's jobs: start, cancel, re-attach, relaunch, clean up.

The add-on keeps one `JobManager`; each job runs in its own `JobRunner` thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..aws.bucket_listing import account_buckets
from ..aws.session import AwsSettings
from ..errors import CloudError, ErrorCode
from ..machine.contract import job_prefix
from .account_jobs import AccountJobs, SharedJob, list_account_jobs
from .cloud_steps import CloudSteps
from .engine import ForgottenMachine
from .engines import find_forgotten, make_engine, stop_forgotten
from .events import EventQueue
from .job_thread import JobRunner
from .records import JobRecord, JobRequest, RecordStore, Stage, new_job_id

_log = logging.getLogger(__name__)


class JobManager:
    def __init__(
        self,
        records_dir: Path,
        events: EventQueue,
        settings_for: Callable[[], AwsSettings],
        steps: CloudSteps | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        self.store = RecordStore(records_dir)
        self.events = events
        self.settings_for = settings_for
        self.steps = steps or CloudSteps(state_dir=Path(records_dir).parent)
        self.poll_seconds = poll_seconds
        self._runners: dict[str, JobRunner] = {}
        self._lock = threading.Lock()
        self._shared: dict[str, SharedJob] = {}  # the last listing of the account's jobs, by id

    def _start(self, record: JobRecord, request: JobRequest | None) -> JobRunner:
        runner = JobRunner(
            record,
            self.settings_for(),
            self.events,
            self.store,
            self.steps,
            request,
            self.poll_seconds,
            engine=make_engine(record),
        )
        with self._lock:
            self._runners[record.job_id] = runner
        self.store.save(record)
        runner.start()
        return runner

    def submit(self, request: JobRequest) -> JobRecord:
        record = JobRecord.from_request(request)
        self._start(record, request)
        return record

    def is_running(self, job_id: str) -> bool:
        with self._lock:
            runner = self._runners.get(job_id)
        return runner is not None and runner.is_alive()

    def running_jobs(self, blend_name: str) -> list[str]:
        """The jobs of `blend_name` followed now, newest first, from the threads alone (no record
        is read: Blender's main thread asks, when a file opens and before a second job starts)."""
        with self._lock:
            runners = [r for r in self._runners.values() if r.is_alive()]
        # A job that has ended can keep its thread a moment (its last checks): it renders no more.
        mine = [r.record for r in runners if r.record.blend_name == blend_name and not r.record.is_final]
        return [record.job_id for record in sorted(mine, key=lambda record: record.created, reverse=True)]

    def runner(self, job_id: str) -> JobRunner | None:
        with self._lock:
            return self._runners.get(job_id)

    def cancel(self, job_id: str) -> None:
        runner = self.runner(job_id)
        if runner is not None and runner.is_alive():
            runner.cancel()
            return
        if not self.store.path(job_id).is_file() and job_id in self._shared:
            self.cancel_shared(self._shared[job_id])  # listed from the bucket, not followed here
            return
        record = self.store.load(job_id)
        if record.launch_id and not record.is_final:
            settings = self.settings_for().in_region(record.region)
            if record.bucket:
                self.steps.mark_cancelled(settings, record)
            make_engine(record).stop(settings, record, "cancelled by the artist")
            record.stage, record.message = Stage.CANCELLED.value, "Cancelled."
            self.store.save(record)

    def cancel_shared(self, job: SharedJob) -> None:
        """Cancel a job of another computer without following it: the cancel mark (that computer
        then ends it as cancelled), then its machines stopped, as a cancel here stops them."""
        record = job.summary.to_record(job.bucket, "", "")
        settings = self.settings_for().in_region(record.region)
        self.steps.mark_cancelled(settings, record)
        if record.launch_id:
            make_engine(record).stop(settings, record, "cancelled from another computer")

    def account_jobs(self) -> AccountJobs:
        """The account's recent jobs from its buckets, every computer's (worker thread: network).

        Where a local record says a job runs but the bucket says it ended (cancelled from another
        computer while this one was closed), the record follows the bucket: it is the shared truth."""
        settings = self.settings_for()
        known = self.steps.buckets.buckets()
        listing = list_account_jobs(settings, account_buckets(settings, known))
        with self._lock:
            self._shared = {job.job_id: job for job in listing.jobs}
        for job in listing.jobs:
            self._follow_bucket(job)
        return listing

    def jobs_elsewhere(self) -> tuple[AccountJobs, list[SharedJob]]:
        """The listing (worker thread), and its jobs this computer keeps no record of: those
        submitted on other computers (and not followed here)."""
        listing = self.account_jobs()
        return listing, [job for job in listing.jobs if not self.store.path(job.job_id).is_file()]

    def _follow_bucket(self, job: SharedJob) -> None:
        if not job.is_final or self.is_running(job.job_id) or not self.store.path(job.job_id).is_file():
            return
        try:
            record = self.store.load(job.job_id)
        except (OSError, ValueError, TypeError):
            return
        if record.is_final:
            return
        record.stage = job.stage
        record.message = f"{Stage(job.stage).label}, as the bucket says (another computer saw it end)."
        record.action = "Press Follow to fetch the frames it left." if job.stage != Stage.DONE.value else ""
        record.ended_at = record.ended_at or job.summary.updated
        self.store.save(record)

    def follow_shared(self, job_id: str, output_dir: Path, blend_name: str) -> JobRecord:
        """Follow here a job listed from the bucket: a local record from its summary (frames to
        `output_dir`, listed under `blend_name`), then followed as a re-attached job is."""
        with self._lock:
            job = self._shared.get(job_id)
        if job is None:
            raise CloudError("That job is not in the list any more.", "Press Jobs on Other Computers again.")
        if self.is_running(job_id):
            raise CloudError("This job is followed here already.", "Its frames come in as they are rendered.")
        if not job.summary.launch_id:
            raise CloudError(
                "This job's machine has not started yet.", "Press Jobs on Other Computers again in a minute."
            )
        record = job.summary.to_record(job.bucket, str(output_dir), blend_name)
        self._start(record, None)
        return record

    def answer_quote(self, job_id: str, go: bool) -> None:
        runner = self.runner(job_id)
        if runner is None or not runner.is_alive():
            raise CloudError(
                "This job is no longer followed.", "Open its .blend again to re-attach, then answer."
            )
        runner.answer_quote(go)

    def attach_unfinished(self, blend_name: str | None = None) -> list[str]:
        """Follow again every unfinished job (after Blender restarted); returns their ids."""
        attached = []
        for record in self.store.all():
            if record.is_final or self.is_running(record.job_id):
                continue
            if blend_name is not None and record.blend_name != blend_name:
                continue
            if not record.launch_id:
                # It never reached launch: nothing runs in the cloud, the submission is lost.
                record.stage = Stage.FAILED.value
                record.message = "Blender was closed before the machine started."
                record.action = "Press Render in Cloud again."
                self.store.save(record)
                continue
            self._start(record, None)
            attached.append(record.job_id)
        return attached

    def relaunch_missing(self, job_id: str, request: JobRequest) -> JobRecord:
        """A new job for the frames that did not arrive, reusing the uploaded inputs as they are."""
        old = self.store.load(job_id)
        missing = old.frames_missing
        if not missing:
            raise CloudError(
                "Every frame of this job has arrived.", "Nothing to relaunch.", code=ErrorCode.NOTHING_MISSING
            )
        # A movie needs every frame together: the relaunch renders frames only (movie=False).
        relaunch = replace(
            request, job_id=new_job_id(), frames=missing, reuse_inputs_from=old.job_id, movie=False
        )
        return self.submit(relaunch)

    def cloud_data_size(self, job_id: str) -> tuple[int, int]:
        """(files, bytes) the job keeps in the bucket: what Delete Cloud Data would delete."""
        record = self.store.load(job_id)
        if not record.bucket:
            return 0, 0
        listed = self.steps.list_objects(
            self.settings_for().in_region(record.region), record.bucket, job_prefix(job_id)
        )
        return len(listed), sum(item.size for item in listed)

    def delete_cloud_data(self, job_id: str) -> int:
        record = self.store.load(job_id)
        if self.is_running(job_id):
            raise CloudError("This job is still running.", "Cancel it first, then delete its cloud data.")
        count = 0
        if record.bucket:
            count = self.steps.delete_job_data(
                self.settings_for().in_region(record.region), record.bucket, job_id
            )
        self.store.delete(job_id)
        return count

    def is_job_live(self, job_id: str) -> bool:
        """Used to tell orphans: a machine whose job is finished, failed or unknown here (a job of
        another computer that the last bucket listing showed going on is live there)."""
        if self.is_running(job_id):
            return True
        with self._lock:
            shared = self._shared.get(job_id)
        if shared is not None and not self.store.path(job_id).is_file():
            return not shared.is_final
        try:
            return not self.store.load(job_id).is_final
        except OSError:
            return False

    def regions_used(self, *also: str) -> list[str]:
        """Every region a job of ours ran in (from the records), plus `also`, sorted."""
        return sorted({record.region for record in self.store.all()} | {r for r in also if r})

    def forgotten_machines(self, *also: str) -> list[ForgottenMachine]:
        """Machines of ours still running, in every region used, whose job is not live here."""
        return find_forgotten(self.settings_for(), self.regions_used(*also), self.is_job_live)

    def stop_forgotten(self, machine: ForgottenMachine) -> None:
        """Stop a forgotten machine (a forgotten Batch job with every child it still has)."""
        stop_forgotten(self.settings_for(), machine)

    def move_jobs(self, old_blend: str, new_blend: str) -> list[str]:
        """The artist saved the file under a new name ("Save As"): its unfinished jobs follow it,
        so the new file lists them and re-attaches to them after a restart."""
        moved = []
        with self._lock:
            runners = {job_id: r for job_id, r in self._runners.items() if r.is_alive()}
        for record in self.store.all():
            if record.blend_name != old_blend or record.is_final:
                continue
            runner = runners.get(record.job_id)
            if runner is not None:
                runner.record.blend_name = new_blend  # the thread saves its own copy: change both
            record.blend_name = new_blend
            self.store.save(record)
            moved.append(record.job_id)
        return moved

    def stop_all(self, timeout: float = 5.0) -> None:
        """Stop following (threads only: machines keep rendering and can be re-attached)."""
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            runner.stop_following()
        for runner in runners:
            runner.join(timeout)
