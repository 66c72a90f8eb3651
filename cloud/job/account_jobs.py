"""The account's recent jobs, read from its buckets: what the Jobs list shows of jobs submitted
on other computers with the same keys.

Bounded at every step: one level of `jobs/` per bucket (ListObjectsV2 with Delimiter), the
newest MAX_JOBS job folders by their id (ids start with the UTC time of submit), one bounded GET
of each `job.json` (cloud/job/summary.py), and, for a job its summary says is still going, one
listing of its end documents and one HEAD of its cancel mark (a job of many machines: first
one listing of its e-mail notices, the job's one summed-up ending). The bucket is the shared truth: a
summary lags when its computer was closed, so what the machines (or a cancelling computer)
wrote last decides the stage. Runs in a worker thread, never on Blender's main thread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..aws import storage
from ..aws.bucket_listing import list_level
from ..aws.session import AwsSettings
from ..errors import CloudError
from ..machine import contract
from ..machine.notice import NOTICE_DIR
from .endings import INTERRUPTION_WORDS
from .records import EngineName, Stage
from .summary import MAX_SUMMARY_BYTES, JobSummary, parse_summary

_log = logging.getLogger(__name__)

MAX_JOBS = 30  # the newest jobs listed, over every bucket
# A notice's ending (cloud/machine/notice.py) -> the stage it says; "quote" is no end.
NOTICE_STAGES = {
    "done": Stage.DONE,
    "failed": Stage.FAILED,
    "capped": Stage.CAPPED,
    "cancelled": Stage.CANCELLED,
    "stopped": Stage.INTERRUPTED,
}
# Entries of out/notice/ read, in one request (S3's largest page): one notice per job is written,
# and a page this long keeps junk folders written beside it from pushing it out.
MAX_NOTICES = 1000
_TIMED_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")  # new_job_id's form: sorts by submit time


@dataclass(frozen=True)
class SharedJob:
    """A job of the account as its bucket tells it: its summary, where it lies, and its stage
    by what was written last (the summary's own stage unless an end document says more)."""

    summary: JobSummary
    bucket: str
    stage: str

    @property
    def job_id(self) -> str:
        return self.summary.job_id

    @property
    def is_final(self) -> bool:
        return Stage(self.stage).is_final


@dataclass
class AccountJobs:
    """A listing: the jobs (newest first), and what was skipped and why (for the log)."""

    jobs: list[SharedJob] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    truncated: bool = False


def list_account_jobs(
    settings: AwsSettings,
    buckets: dict[str, str],
    limit: int = MAX_JOBS,
    log: Callable[[str], None] = _log.warning,
) -> AccountJobs:
    """The newest `limit` jobs over `buckets` (bucket -> region); a summary that breaks the
    contract is skipped with a log line, never shown."""
    found = AccountJobs()

    def skip(what: str, why: str) -> None:
        line = f"Cloud Render skipped {contract.clean_text(what, 200)}: {why}"
        found.skipped.append(line)
        log(line)

    for bucket, region in sorted(buckets.items()):
        here = settings.in_region(region)
        level = list_level(here, bucket, "jobs/")
        found.truncated |= level.truncated
        ids = []
        for folder in level.folders:
            job_id = folder[len("jobs/") : -1]
            if contract.JOB_ID_PATTERN.fullmatch(job_id):
                ids.append(job_id)
            else:
                skip(f"s3://{bucket}/{folder}", "not a job id")
        # Newest first by the time in the id; an id of another form sorts last (it cannot push
        # the artist's own jobs out of the listing).
        ids.sort(key=lambda i: (bool(_TIMED_ID.fullmatch(i)), i), reverse=True)
        for job_id in ids[:limit]:
            job = _read_job(here, bucket, job_id, skip)
            if job is not None:
                found.jobs.append(job)
    found.jobs.sort(key=lambda j: j.summary.created, reverse=True)
    del found.jobs[limit:]
    return found


def _read_job(
    settings: AwsSettings, bucket: str, job_id: str, skip: Callable[[str, str], None]
) -> SharedJob | None:
    key = contract.record_key(job_id)
    try:
        body = storage.get_bytes(settings, bucket, key, MAX_SUMMARY_BYTES)
    except storage.TooLarge:
        skip(f"s3://{bucket}/{key}", f"over {MAX_SUMMARY_BYTES} bytes")
        return None
    if body is None:
        return None  # a job from before the summaries, or one packing now: nothing to show yet
    try:
        summary = parse_summary(body, job_id)
    except contract.ContractError as error:
        skip(f"s3://{bucket}/{key}", str(error))
        return None
    if summary.region != settings.region:
        skip(f"s3://{bucket}/{key}", f"it names region {summary.region}, its bucket is in {settings.region}")
        return None
    stage = summary.stage if Stage(summary.stage).is_final else ended_stage(settings, bucket, summary)
    return SharedJob(summary, bucket, stage or summary.stage)


def ended_stage(settings: AwsSettings, bucket: str, summary: JobSummary) -> str:
    """How the job ended by what was written after its summary ("" while nothing says it ended):
    the machine's done.json, else a computer's cancel mark, else its other end documents. A job
    of many machines writes its end documents per machine; the last machine to end writes the
    job's e-mail notice, whose ending says it (else its summary once a computer follows it to
    the end)."""
    job_id = summary.job_id
    out = contract.out_prefix(job_id)
    if summary.engine != EngineName.EC2.value:
        told = noticed_stage(settings, bucket, out)
        if told:
            return told
    names = {key[len(out) :] for key in list_level(settings, bucket, out, max_keys=100).keys}
    if "done.json" in names:
        return Stage.DONE.value
    # A machine stopped by a cancel may still write an interruption or a failure as it goes.
    if storage.etag(settings, bucket, contract.cancel_key(job_id)) is not None:
        return Stage.CANCELLED.value
    if "error.json" in names:
        return Stage.FAILED.value
    if "interrupted.json" in names:
        return _interrupted_stage(settings, bucket, out + "interrupted.json", summary.frames)
    return ""


def _interrupted_stage(settings: AwsSettings, bucket: str, key: str, frames: list[int]) -> str:
    """interrupted.json's reason -> the stage it means (a spot loss, a cap, a stop after a quote)."""
    try:
        body = storage.get_bytes(settings, bucket, key, contract.MAX_JSON_BYTES)
        data = contract.load_document(body or b"{}", "interrupted.json")
        reason = contract.parse_interrupted(data, frames).reason
    except (contract.ContractError, CloudError):
        return Stage.INTERRUPTED.value
    return INTERRUPTION_WORDS[reason][0].value


def noticed_stage(settings: AwsSettings, bucket: str, out: str) -> str:
    """The stage the job's e-mail notice (`out/notice/<ending>/<words>`) says, or "": one bounded
    listing of the notice folders. Anyone with the daily key can write there, so an ending
    outside the known ones is ignored; of several, the first in NOTICE_STAGES' order counts."""
    level = list_level(settings, bucket, out + NOTICE_DIR, max_keys=MAX_NOTICES, max_pages=1)
    endings = {folder[len(out + NOTICE_DIR) :].rstrip("/") for folder in level.folders}
    return next((stage.value for ending, stage in NOTICE_STAGES.items() if ending in endings), "")
