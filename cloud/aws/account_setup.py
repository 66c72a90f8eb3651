"""The first-run "Set up" flow: from freshly pasted keys to "Ready to render".

One call walks a new account through everything a render needs, in the order an artist would
be asked: keys (root keys refused), region (the nearest that offers GPU machines), bucket,
firewall, machine image, the GPU quota (0 on new accounts), the AWS Batch engine that jobs on
many machines run on (so the first such job does not pay for making it), the optional
monthly budget and the optional e-mail when a job ends (job_mail.py).
Each step ends as a `SetupStep` with plain words, never a traceback, so the preferences panel
can show a green "Ready to render" or one line and one button per thing AWS still needs.
Everything here blocks on the network: the add-on runs it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..cost.catalog import Catalog, InstanceType, load_catalog
from ..errors import CloudError, ErrorCode
from . import batch
from .bucket_registry import bucket_registry
from .bucket_setup import DEFAULT_EXPIRE_DAYS, ensure_bucket
from .budget import ensure_monthly_budget, valid_email
from .compute import ensure_security_group, find_ami
from .credentials import verify
from .error_rules import translate
from .iam_policy import POLICY_TITLES
from .job_mail import ensure_job_mail
from .quotas import (
    CapacityReport,
    check_capacity,
    family_quota_code,
    quota_request_status,
    request_quota_increase,
    runnable_now,
)
from .region_latency import default_urls, probe_latency, rank_regions
from .session import AwsSettings, client

Status = Literal["done", "needs_action", "failed", "offered"]

READY = "Ready to render"
# Set Up is the only time the Set Up policy is needed (cloud/aws/iam_policy.py says why).
DETACH_SETUP_POLICY = (
    f"Daily rendering needs only the {POLICY_TITLES['render']} policy: "
    f"{POLICY_TITLES['setup']} may be detached from your IAM user now."
)
MAX_ALTERNATIVES = 4
LATENCY_ATTEMPTS = 3
LATENCY_TIMEOUT_S = 2.0

# Step names, shown as the first words of each line in the setup panel.
KEYS, REGION, BUCKET, FIREWALL, IMAGE, QUOTA, BATCH, BUDGET, JOB_MAIL = (
    "AWS keys",
    "Region",
    "Storage bucket",
    "Firewall",
    "Render machine image",
    "Machine limit (quota)",
    "Many machines (AWS Batch)",
    "Monthly budget",
    "E-mail when a job ends",
)

# What the UI's button for a step does (empty: no button).
BUTTON_REQUEST_QUOTA = "request_quota"
BUTTON_CREATE_BUDGET = "create_budget"
BUTTON_RETRY = "retry"


@dataclass(frozen=True)
class SetupStep:
    """One line of the setup screen. `action` is the next step in words; `button` names the
    UI button that does it; a step that is not `required` (the offered budget) never blocks."""

    name: str
    status: Status
    message: str
    action: str = ""
    button: str = ""
    required: bool = True

    @property
    def ok(self) -> bool:
        return self.status == "done" or not self.required


@dataclass
class SetupReport:
    """What setup did and what is left; `ready` when every required step is done."""

    region: str
    bucket: str
    steps: list[SetupStep]
    ready: bool
    alternatives: list[str] = field(default_factory=list)
    security_group: str = ""
    image_id: str = ""
    user_name: str = ""

    def step(self, name: str) -> SetupStep | None:
        return next((s for s in self.steps if s.name == name), None)

    def summary(self) -> str:
        """READY, or one line per step that still needs something (and what runs meanwhile)."""
        if self.ready:
            return f"{READY}\n{DETACH_SETUP_POLICY}"
        lines = ["Not ready to render yet. AWS still needs:"]
        for s in self.steps:
            if not s.ok:
                lines.append(f"- {s.name}: {' '.join(p for p in (s.message, s.action) if p)}")
        if self.alternatives:
            lines.append("Meanwhile your account can render on: " + ", ".join(self.alternatives) + ".")
        return "\n".join(lines)


class _Flow:
    """Collects steps and reports each one as it ends."""

    def __init__(self, progress: Callable[[str], None] | None) -> None:
        self.steps: list[SetupStep] = []
        self._progress = progress

    def say(self, text: str) -> None:
        if self._progress is not None:
            self._progress(text)

    def add(self, step: SetupStep) -> SetupStep:
        self.steps.append(step)
        words = {"done": "done", "needs_action": "needs action", "failed": "failed", "offered": "offered"}
        self.say(f"{step.name}: {words[step.status]}. {step.message}".strip())
        return step

    def failed(self, name: str, exc: BaseException, context: str, region: str = "") -> SetupStep:
        err = translate(exc, context, region=region)
        return self.add(SetupStep(name, "failed", err.message, err.action, BUTTON_RETRY))


# --- the region ---------------------------------------------------------------------------------


def _gpu_offered(settings: AwsSettings, region: str, names: list[str]) -> set[str]:
    """Which of the catalog's GPU types EC2 offers this account in `region` (live, not the catalog)."""
    ec2 = client(settings.in_region(region), "ec2")
    found: set[str] = set()
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="region", Filters=[{"Name": "instance-type", "Values": names}]
    )
    for page in pages:
        found.update(o["InstanceType"] for o in page.get("InstanceTypeOfferings", []))
    return found


def _pick_region(
    settings: AwsSettings, catalog: Catalog, latency_urls: Mapping[str, str] | None
) -> tuple[str, str]:
    """The nearest answering region whose EC2 offers a catalog GPU type, and why, in words.

    Nearest rather than cheapest: uploads and the live log feel the distance on every job, and
    the region picker in the panel still shows prices for an artist who wants to trade.
    """
    urls = dict(latency_urls) if latency_urls is not None else default_urls(catalog.regions())
    latencies = probe_latency(urls, attempts=LATENCY_ATTEMPTS, timeout=LATENCY_TIMEOUT_S)
    reachable = {r: ms for r, ms in latencies.items() if ms is not None}
    if not reachable:
        raise CloudError(
            "Cloud Render could not reach any AWS region from this computer.",
            "Check your internet connection (or firewall), then run Set up again.",
            code=ErrorCode.NO_REGION_REACHABLE,
        )
    ranked = [c for c in rank_regions(latencies, catalog) if c.score != float("inf")]
    skipped: list[str] = []
    first_error: Exception | None = None
    for choice in sorted(ranked, key=lambda c: c.latency_ms or 0.0):
        try:
            offered = _gpu_offered(settings, choice.region, choice.gpu_types)
        except Exception as exc:  # a region this account cannot use (not opted in, denied): try the next
            first_error = first_error or exc
            offered = set()
        if not offered:
            skipped.append(choice.region)
            continue
        gpus = [t for t in catalog.offered_in(choice.region) if t.name in offered]
        cheapest = min(gpus, key=lambda t: t.prices[choice.region])
        why = (
            f"Picked {choice.region}: the nearest region ({choice.latency_ms:.0f} ms) that offers GPU "
            f"machines ({len(gpus)} types, from {cheapest.name} at ${cheapest.prices[choice.region]:.3f}/h)."
        )
        if skipped:
            why += f" Nearer {', '.join(skipped)} offered no GPU machines to your account."
        return choice.region, why
    if first_error is not None:
        raise translate(first_error, "checking which regions offer GPU machines")
    raise CloudError(
        "None of the AWS regions Cloud Render can reach offers GPU machines to your account.",
        "Choose a region in Preferences > Add-ons > Cloud Render, then run Set up again.",
        code=ErrorCode.NO_GPU_REGION,
        detail=f"reachable: {sorted(reachable)}",
    )


# --- capacity -----------------------------------------------------------------------------------


def _describe(itype: InstanceType, region: str) -> str:
    kind = f"{itype.gpu_model or 'GPU'} GPU" if itype.is_gpu else f"CPU, {itype.vcpu} vCPUs"
    return f"{itype.name} ({kind}, ${itype.prices[region]:.3f}/h)"


def best_runnable(settings: AwsSettings, catalog: Catalog, limit: int = MAX_ALTERNATIVES) -> list[str]:
    """The catalog types this account can start now in the settings' region, best first, in words:
    GPU types before CPU ones, each by price per unit of speed (cost per frame), faster first on a tie."""
    region = settings.region
    offered = catalog.offered_in(region)
    ordered = sorted(offered, key=lambda t: (not t.is_gpu, t.prices[region] / t.speed, -t.speed, t.name))
    names = runnable_now(settings, [t.name for t in ordered], spot=False)
    return [_describe(catalog.get(n), region) for n in names[:limit]]


def _quota_step(settings: AwsSettings, report: CapacityReport) -> SetupStep:
    if report.fits:
        return SetupStep(QUOTA, "done", report.message, report.action)
    if report.code not in (ErrorCode.QUOTA_ZERO, ErrorCode.QUOTA_LOW):
        return SetupStep(QUOTA, "needs_action", report.message, report.action)
    try:
        pending = quota_request_status(settings, report.instance_type, spot=False)
    except CloudError:
        pending = None  # only extra information: the step still says what to do
    if pending is not None and pending.open:
        return SetupStep(
            QUOTA,
            "needs_action",
            f"{report.message} You asked for {pending.desired:g} vCPUs: {pending.status_words}.",
            "Wait for AWS's answer (usually within a day), then run Set up again; "
            "meanwhile render on a machine type your account can run now.",
        )
    return SetupStep(QUOTA, "needs_action", report.message, report.action, BUTTON_REQUEST_QUOTA)


# --- the flow -----------------------------------------------------------------------------------


def run_setup(
    settings: AwsSettings,
    state_dir: Path,
    *,
    region: str | None = None,
    instance_type: str = "g4dn.xlarge",
    spot: bool = False,
    machines: int = 1,
    latency_urls: dict[str, str] | None = None,
    budget: tuple[float, str] | None = None,
    progress: Callable[[str], None] | None = None,
    retention_days: int = DEFAULT_EXPIRE_DAYS,
    mail: str = "",
) -> SetupReport:
    """Walk the account to "Ready to render"; every problem becomes a step, never an exception.

    Blocks on the network: call it from a worker thread; `progress` is called from that thread
    with one line per step, so the UI side should hand the lines to its main-thread queue.

    `state_dir` is the add-on's state folder (`bucket_registry.STATE_FOLDER` in its user folder): the
    bucket made here goes into the registry there, the one every job reads.
    `region`: use this one instead of measuring; `latency_urls` (region -> URL) replaces the
    regional endpoints probed; `budget` = (USD per month, alert email) creates the budget,
    otherwise it is only offered. `retention_days` (the preferences') is how long job data stays
    in the bucket: set here, so a job (with only the daily Render policy, which may not configure
    a bucket) finds the bucket as it wants it. `mail` (the budget's address, reused) gets an
    e-mail when a job ends, with Blender closed; empty: none. `instance_type`, `spot` and `machines` (the scene's) shape the
    Batch compute environment; a job of another shape brings it up to date when submitted.
    Steps after keys and region go on after a failure, so the report lists everything that is
    left at once.
    """
    flow = _Flow(progress)
    report = SetupReport(region=region or "", bucket="", steps=flow.steps, ready=False)
    _walk(
        flow,
        report,
        settings,
        Path(state_dir),
        region,
        (instance_type, spot, machines),
        latency_urls,
        budget,
        retention_days,
    )
    _mail_step(flow, settings.in_region(report.region) if report.region else settings, report, mail)
    report.ready = bool(flow.steps) and all(s.ok for s in flow.steps)
    flow.say(report.summary().splitlines()[0])
    return report


def _walk(
    flow: _Flow,
    report: SetupReport,
    settings: AwsSettings,
    state_dir: Path,
    region: str | None,
    shape: tuple[str, bool, int],
    latency_urls: dict[str, str] | None,
    budget: tuple[float, str] | None,
    retention_days: int,
) -> None:
    """The steps in order; returns early only when keys or region fail (nothing else can work)."""
    instance_type, spot, machines = shape
    catalog = load_catalog()
    flow.say("Checking your AWS keys…")
    try:
        identity = verify(settings if region is None else settings.in_region(region))
    except Exception as exc:
        flow.failed(KEYS, exc, "checking your AWS keys")
        return
    report.user_name = identity.user_name
    flow.add(SetupStep(KEYS, "done", f"Your keys belong to {identity.user_name} (not the root user)."))

    if region is None:
        flow.say("Measuring the distance to each AWS region…")
        try:
            region, why = _pick_region(settings, catalog, latency_urls)
        except Exception as exc:
            flow.failed(REGION, exc, "choosing a region")
            return
        flow.add(SetupStep(REGION, "done", why))
    else:
        flow.add(SetupStep(REGION, "done", f"Using {region}, as chosen in the preferences."))
    report.region = region
    here = settings.in_region(region)

    flow.say("Preparing your storage bucket…")
    try:
        report.bucket = ensure_bucket(here, bucket_registry(state_dir), expire_days=retention_days)
        flow.add(SetupStep(BUCKET, "done", f"Your files go to the private bucket {report.bucket}."))
    except Exception as exc:
        flow.failed(BUCKET, exc, "preparing your storage bucket", region)

    flow.say("Preparing the render machines' firewall…")
    try:
        report.security_group = ensure_security_group(here)
        flow.add(
            SetupStep(
                FIREWALL, "done", "Render machines accept no incoming connection (security group ready)."
            )
        )
    except Exception as exc:
        flow.failed(FIREWALL, exc, "preparing the render machine's firewall", region)

    flow.say("Looking for the GPU render machine image…")
    try:
        ami = find_ami(here)
        report.image_id = ami.image_id
        flow.add(SetupStep(IMAGE, "done", f"Render machines boot {ami.name or ami.image_id}."))
    except Exception as exc:
        flow.failed(IMAGE, exc, "looking for the render machine image", region)

    flow.say(f"Checking whether your account may start a {instance_type}…")
    capacity: CapacityReport | None = None
    try:
        capacity = check_capacity(here, instance_type, spot=False)
        step = flow.add(_quota_step(here, capacity))
        if step.status != "done":
            report.alternatives = best_runnable(here, catalog)
            if report.alternatives:
                flow.say("Your account can render now on: " + ", ".join(report.alternatives) + ".")
    except Exception as exc:
        flow.failed(QUOTA, exc, "checking what your account may run", region)

    _batch_step(flow, here, catalog, instance_type, spot, machines, None if spot else capacity)

    if budget is not None:
        amount, email = budget
        flow.say("Creating the monthly budget…")
        try:
            created = ensure_monthly_budget(here, amount, email)
            what = "created" if created else "already set up"
            flow.add(
                SetupStep(
                    BUDGET,
                    "done",
                    f"Monthly budget {what}: AWS emails {email} when spending passes 80% of ${amount:g}.",
                )
            )
        except Exception as exc:
            flow.failed(BUDGET, exc, "setting up the monthly budget")
    else:
        flow.add(
            SetupStep(
                BUDGET,
                "offered",
                "A monthly AWS budget can email you when your spending nears an amount you choose.",
                "Enter an amount and your email, then press Create budget.",
                BUTTON_CREATE_BUDGET,
                required=False,
            )
        )


def _mail_step(flow: _Flow, settings: AwsSettings, report: SetupReport, mail: str) -> None:
    """The e-mail when a job ends: optional, so it never keeps Set Up from "Ready to render"."""
    if not report.bucket:
        return  # keys, region or bucket failed: their steps say what to do
    if not mail:
        flow.add(
            SetupStep(
                JOB_MAIL,
                "offered",
                "Cloud Render can e-mail you when a job ends, even with Blender closed.",
                "Enter your e-mail, then run Set up again.",
                required=False,
            )
        )
        return
    if not valid_email(mail):
        flow.add(
            SetupStep(
                JOB_MAIL,
                "failed",
                f"The e-mail address {mail!r} does not look right.",
                "Enter the address where AWS should write, like name@example.com, then run Set up again.",
                required=False,
            )
        )
        return
    flow.say("Setting up the e-mail when a job ends…")
    try:
        made = ensure_job_mail(settings, report.bucket, mail)
    except Exception as exc:
        err = translate(exc, "setting up the e-mail when a job ends", region=settings.region)
        flow.add(SetupStep(JOB_MAIL, "failed", err.message, err.action, BUTTON_RETRY, required=False))
        return
    asked = any("confirmation" in m for m in made)
    first = (
        " AWS sends you a confirmation mail first: open its link, or no job e-mail arrives." if asked else ""
    )
    flow.add(
        SetupStep(
            JOB_MAIL,
            "done",
            f"AWS e-mails {mail} when a job ends or waits for your answer, even with Blender closed.{first}",
            required=False,
        )
    )


def _batch_step(
    flow: _Flow,
    settings: AwsSettings,
    catalog: Catalog,
    instance_type: str,
    spot: bool,
    machines: int,
    capacity: CapacityReport | None,
) -> None:
    """Make (or bring up to date) the Batch engine for the scene's machine type and pricing.

    Its vCPU ceiling is the larger of the scene's machines and what the quota allows, so a
    later job of up to that many machines finds nothing to change. Every piece is read before
    it is made (batch.ensure_engine), so a run that failed half-way is finished by the next.
    """
    flow.say("Preparing AWS Batch for jobs on many machines…")
    facts = catalog.types.get(instance_type)
    vcpus = facts.vcpu if facts is not None else 4
    ceiling = batch.vcpus_for(vcpus, machines)
    if capacity is not None and capacity.quota_vcpus:
        ceiling = max(ceiling, int(capacity.quota_vcpus) // max(vcpus, 1) * max(vcpus, 1))
    changes: list[str] = []
    gpu = bool(facts.gpu_count) if facts is not None else True
    roles_note = ""

    def engine_for(check_roles: bool) -> batch.Engine:
        return batch.ensure_engine(
            settings,
            instance_type,
            spot,
            ceiling,
            pack_bytes=batch.SETUP_PACK_BYTES,
            gpu=gpu,
            changes=changes,
            say=flow.say,
            check_roles=check_roles,
        )

    try:
        try:
            engine = engine_for(check_roles=True)
        except CloudError as denied:
            # Only the daily Render policy (no IAM read): what is there may still be all a job
            # needs. Look without the roles; what must be made still asks for Set Up's policy.
            if denied.code != ErrorCode.ACCESS_DENIED or "iam:" not in denied.message:
                raise
            engine = engine_for(check_roles=False)
            roles_note = " (its roles were not re-read: that needs the Set Up policy)"
    except Exception as exc:
        err = translate(exc, "preparing AWS Batch for many machines", region=settings.region)
        action = f"{err.action} Rendering on one machine does not need this.".strip()
        flow.add(SetupStep(BATCH, "failed", err.message, action, BUTTON_RETRY))
        return
    where = (
        f"{engine.compute_environment} in {settings.region} ({instance_type}, "
        f"{'spot' if spot else 'on-demand'}, up to {ceiling} vCPUs; no machine runs while no job does)"
    )
    if changes:
        message = f"Ready for jobs on many machines: {where}. Made now: {'; '.join(changes)}."
    else:
        message = f"Ready for jobs on many machines: {where}. Nothing needed changing{roles_note}."
    flow.add(SetupStep(BATCH, "done", message))


def request_quota(settings: AwsSettings, region: str, instance_type: str) -> str:
    """File (or find the open) on-demand quota increase for `instance_type`; what happened, in words.

    Raises CloudError when AWS refuses, with what to do instead.
    """
    request = request_quota_increase(settings.in_region(region), instance_type, spot=False)
    _, label = family_quota_code(instance_type, spot=False)
    if request.status == "NOT_NEEDED":
        return (
            f"No request needed: your account may already run a {instance_type} in {region} "
            f"({request.desired:g} vCPUs of {label})."
        )
    return (
        f"Asked AWS to raise {label} in {region} to {request.desired:g} vCPUs, enough for a "
        f"{instance_type}; the request is {request.status_words}."
    )
