"""`make aws-check`: one tiny frame on a real AWS account, timed step by step, with a hard cost cap.

For whoever has an AWS account and wants to know whether Cloud Render works there, and how
long each part takes, before an artist finds out. The built extension is installed into a
fresh Blender (the bpy module, a throwaway user directory) as "Install from Disk" does, the
keys are entered as the add-on's keys (or its AWS Profile source), and then, by script, what an
artist does: Set Up, a machine type, a scene, Render in Cloud. It renders ONE frame (32x32, 4
samples, Cycles) on the cheapest machine type of the catalog that the account's quota allows,
with Max Cost and Max Hours set so that the worst case the confirmation shows stays within
`--max-cost` (default: the least Cloud Render launches that type with, $0.12 on the cheapest);
it refuses to press Render otherwise. It prints each step as
`step: seconds  what`, the cost, every line of the job log in which AWS refused something, and
one closing `RESULT ok=... seconds=... cost_usd=... instance_type=... region=...` line: plain
text to paste into an issue. It prints no secret (keys are never echoed; the account id and
user name are). It leaves nothing running: the job ends Done or is cancelled, and the job's
machines are looked up afterwards (and terminated if one is somehow left).

    python dev/aws_check.py --profile NAME --yes     # a real account, keys from ~/.aws
    python dev/aws_check.py --yes                    # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    python dev/aws_check.py --emulated               # the emulated account (what the test runs)

Without `--yes` it prints what it would do and the most it can cost, and stops (exit code 2).

`--emulated` runs the same flow against the emulated account (`dev/emulator.py`: moto in
server mode behind the strict IAM layer) and the instance simulator (`dev/simulator.py`,
which renders on the CPU, so only CPU types are chosen there): an IAM user holding Cloud
Render's two managed policies presses Set Up, the Set Up policy is detached, and everything
the check measures runs with the daily Render policy alone; the Blender build is staged in the
bucket's cache as a machine's first boot would leave it. `tests/e2e/test_aws_check.py` runs
that. A real account cannot be reached from the test suite: the test covers everything up to
the line where requests go to AWS itself (real IAM, quotas, prices, capacity, boot times),
which only a run with `--yes` on a real account shows.

The launch has a floor of its own: Cloud Render allows 15 minutes of boot before a machine's
dead-man timer starts and refuses a cap that leaves under 5 minutes of rendering after it, so
the cheapest catalog type ($0.34/h) launches only with a cap of $0.12 or more, and that floor
is the check's default cap. A lower `--max-cost` is refused before pressing Render, naming the
cap that would launch; what a tiny frame really costs (cost_usd) stays far under either.

Exit codes: 0 the frame came back; 1 something failed (the output says what); 2 refused to
start (no `--yes`, no keys, or a cap that cannot be kept); nothing was launched.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # dev tooling runs from a checkout, not from Blender

from cloud.job.records import FINAL_STAGE_IDS as FINAL_STAGES  # noqa: E402

DEFAULT_MAX_COST = 0.0  # the launch floor of the machine chosen (see the module docstring)
FRAME_SIZE = 32
SAMPLES = 4
EMULATED_TIMEOUT_S = 600.0  # the simulator renders in seconds; anything near this is a hang
FOLLOW_MARGIN_S = 900.0  # past Max Hours: the end check, the download, AWS's own lag
CANCEL_WAIT_S = 180.0
GONE_WAIT_S = 120.0
STEPS = (
    "keys verified",
    "Set Up found",
    "machine chosen",
    "scene made",
    "upload",
    "launch",
    "boot to first frame",
    "frame back",
)
# A job log line in which AWS (or the strict layer standing in for it) refused something.
REFUSAL = re.compile(
    r"access ?denied|not allowed|not authori[sz]ed|UnauthorizedOperation|quota", re.IGNORECASE
)
AT_MOST = re.compile(r"At most \$(\d+(?:\.\d+)?)")
# Set Up steps a one-machine render on a type the quota allows does not need: the quota step
# checks the scene's type (a GPU type, 0 vCPUs on a new account) and Batch is for many machines.
NOT_NEEDED_HERE = ("Machine limit (quota)", "Many machines (AWS Batch)")


class Refused(Exception):
    """The check stops before anything is launched; the text says why, in plain words."""


class Failed(Exception):
    """A step failed; the text says which and what AWS or the add-on said."""


# --- printing -----------------------------------------------------------------------------------


class Clock:
    """Times each step from the end of the one before; prints `step: seconds  what`."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()

    def step(self, name: str, what: str, seconds: float | None = None) -> None:
        now = time.monotonic()
        took = now - self.last if seconds is None else seconds
        print(f"{name}: {took:.1f}  {what}", flush=True)
        self.last = now

    def note(self, what: str) -> None:
        """A line that is not one of the measured steps (preparing Blender, the emulator)."""
        now = time.monotonic()
        print(f"  ({now - self.last:.1f} s) {what}", flush=True)
        self.last = now

    def total(self) -> float:
        return time.monotonic() - self.start


def result_line(ok: bool, seconds: float, cost: float, instance_type: str, region: str) -> str:
    return (
        f"RESULT ok={'true' if ok else 'false'} seconds={seconds:.1f} cost_usd={cost:.4f} "
        f"instance_type={instance_type or '-'} region={region or '-'}"
    )


# --- the arguments and the plan -----------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Render one tiny frame with Cloud Render on an AWS account, timing each step."
    )
    parser.add_argument("--emulated", action="store_true", help="the emulated account (no real AWS)")
    parser.add_argument("--profile", default="", help="an AWS profile (~/.aws) instead of the key variables")
    parser.add_argument("--region", default="", help="the AWS region (default: the add-on's default)")
    parser.add_argument(
        "--max-cost",
        type=float,
        default=DEFAULT_MAX_COST,
        help="the most the check may cost, in USD (default: the least Cloud Render launches the machine with)",
    )
    parser.add_argument(
        "--moto-url",
        default="",
        help="with --emulated: the emulated account's server already running (the test suite's)",
    )
    parser.add_argument("--yes", action="store_true", help="really launch a machine on a real account")
    parser.add_argument("--out", default="", help="where the scene, frame and logs go (default: a temp dir)")
    return parser.parse_args(argv)


def plan_text(args: argparse.Namespace) -> str:
    """What the check will do and what it may cost, before anything happens."""
    account = "the emulated AWS account" if args.emulated else "your AWS account"
    keys = (
        "emulated keys"
        if args.emulated
        else f"AWS profile '{args.profile}'"
        if args.profile
        else "the keys in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    )
    return (
        f"Cloud Render account check on {account} ({keys}, region {args.region or 'the add-on default'}):\n"
        "  checks the keys and Set Up, picks the cheapest machine type your quota allows, and renders\n"
        f"  one {FRAME_SIZE}x{FRAME_SIZE} frame ({SAMPLES} samples, Cycles) on it with Render in Cloud.\n"
        f"  It costs at most {f'${args.max_cost:g}' if args.max_cost > 0 else 'the least Cloud Render launches that machine with ($0.12 on a c5.2xlarge)'}:\n"
        "  Max Cost and Max Hours are set so, and it refuses to\n"
        "  start if the confirmation's worst case is higher. The machine ends itself when done."
    )


def env_keys() -> tuple[str, str] | None:
    key_id = os.environ.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "").strip()
    return (key_id, secret) if key_id and secret else None


def refuse_to_start(args: argparse.Namespace) -> str:
    """Why a real-account run may not start (empty: it may)."""
    if args.emulated:
        return ""
    if not args.yes:
        return "Not started: this launches a real machine in your AWS account. Run again with --yes."
    if not args.profile and env_keys() is None:
        return (
            "Not started: no AWS keys. Pass --profile NAME, or set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (an IAM user's key with Cloud Render's policies, never the root's)."
        )
    if not math.isfinite(args.max_cost) or args.max_cost < 0:
        return "Not started: --max-cost must be a positive number of US dollars."
    return ""


def isolate(emulated: bool) -> Path:
    """A Blender user directory that is not the developer's own (before bpy is imported).

    Emulated: also the emulated account's keys only (demo_common.isolate). Real: the AWS
    configuration stays as it is, so --profile finds the developer's ~/.aws profiles."""
    if emulated:
        from dev.demo_common import isolate as isolate_emulated

        isolate_emulated()
    else:
        os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="cloud-render-aws-check-user-")
    return Path(os.environ["BLENDER_USER_RESOURCES"])


# --- the steps before Render in Cloud ------------------------------------------------------------


@dataclass
class Check:
    """What the steps learn, for the steps after them and for the RESULT line."""

    module: Any
    emulated: bool
    max_cost: float
    out: Path
    region: str = ""
    instance_type: str = ""
    price: float = 0.0
    job_id: str = ""
    cost: float = 0.0
    ok: bool = False
    refusals: list[str] = field(default_factory=list)


def connect_real(module: Any, args: argparse.Namespace) -> None:
    """The preferences as an artist fills them: AWS Profile, or the keys entered (encrypted)."""
    from dev import addon_harness as harness

    prefs = harness.preferences()
    prefs.endpoint_url = ""
    if args.region:
        try:
            prefs.default_region = args.region
        except TypeError as exc:  # an EnumProperty: only the regions the add-on offers
            raise Refused(f"--region {args.region} is not a region Cloud Render offers.") from exc
    if args.profile:
        prefs.credential_source = "PROFILE"
        prefs.profile = args.profile
        return
    keys = env_keys()
    assert keys is not None  # refuse_to_start checked
    prefs.credential_source = "KEYS"
    credentials = module.cloud.aws.credentials
    credentials.save_keys(module.addon.account.key_dir(), credentials.validate(*keys))


def verify_keys(check: Check, clock: Clock) -> Any:
    """STS says whose keys these are (the add-on refuses root keys); the AWS settings for later."""
    module = check.module
    settings = module.addon.account.aws_settings()
    try:
        identity = module.cloud.aws.credentials.verify(settings)
    except Exception as exc:
        raise Failed(f"The keys were not accepted: {words(exc)}") from exc
    clock.step("keys verified", f"account {identity.account}, user {identity.user_name}")
    return settings


def find_set_up(check: Check, clock: Clock, settings: Any) -> None:
    """Set Up again, as the keys stand now (on the emulated account: the daily Render policy
    alone): it finds what an earlier Set Up made and says what is missing. Ready, or ready for
    one machine on a type the quota allows (the quota step checks the scene's type, and Batch is
    for many machines), or the check stops with Set Up's own summary."""
    module = check.module
    setup = module.cloud.aws.account_setup
    report = setup.run_setup(
        settings, module.addon.pump.user_dir("state"), region=check.region, instance_type="g4dn.xlarge"
    )
    lacking = [s for s in report.steps if not s.ok and s.name not in NOT_NEEDED_HERE]
    if lacking:
        raise Failed("Set Up is not ready:\n" + report.summary())
    aside = [f"{s.name}: {s.message}" for s in report.steps if not s.ok]
    check.refusals += [line for line in aside if REFUSAL.search(line)]
    state = "Ready to render" if report.ready else "ready for one machine; " + " ".join(aside)
    clock.step("Set Up found", f"{state} (bucket {report.bucket}, region {report.region})")


def cheapest_runnable(check: Check, settings: Any) -> list[str]:
    """The catalog's types in the region, cheapest first (on the emulated account: CPU only,
    as the simulator renders on the CPU), that the account's quota lets it start now."""
    module = check.module
    prices = module.addon.prices
    offered = module.addon.prices.catalog().offered_in(check.region)
    usable = [t for t in offered if not (check.emulated and t.is_gpu)]
    by_price = sorted(
        usable, key=lambda t: (prices.hourly(check.region, t.name, False).usd or math.inf, t.name)
    )
    here = settings.in_region(check.region)
    return list(module.cloud.aws.quotas.runnable_now(here, [t.name for t in by_price], spot=False))


def choose_machine(check: Check, clock: Clock, settings: Any) -> None:
    """The cheapest type the quota allows: a tiny frame is all boot, so price per hour decides."""
    module = check.module
    try:
        names = cheapest_runnable(check, settings)
        if not names:
            raise Failed(f"The account's quotas allow no machine type of the catalog in {check.region}.")
        capacity = module.cloud.aws.quotas.check_capacity(
            settings.in_region(check.region), names[0], spot=False
        )
    except Failed:
        raise
    except Exception as exc:
        raise Failed(f"Could not read which machines the account may start: {words(exc)}") from exc
    check.instance_type = names[0]
    check.price = float(module.addon.prices.hourly(check.region, check.instance_type, False).usd or 0.0)
    if check.max_cost <= 0:  # no --max-cost: the least this type is launched with
        overhead = module.cloud.job.cloud_steps.BOOT_OVERHEAD_S
        check.max_cost = launch_floor(check.price, overhead, module.cloud.cost.caps.MIN_MACHINE_S)
    facts = module.addon.prices.catalog().get(check.instance_type)
    kind = f"{facts.gpu_model or 'GPU'} GPU" if facts.is_gpu else f"CPU, {facts.vcpu} vCPUs"
    clock.step(
        "machine chosen",
        f"{check.instance_type} ({kind}, ${check.price:.3f}/h on-demand), the cheapest of "
        f"{len(names)} the quota allows; {capacity.message}",
    )


def max_hours_for(max_cost: float, price: float) -> float:
    """The Max Hours that keeps price x hours within the cost cap (the setting's floor is 0.1 h,
    which the confirmation's worst case then shows, and the cap check refuses)."""
    return max(0.1, math.floor(max_cost / price * 1000) / 1000) if price > 0 else 0.1


def make_scene(check: Check, clock: Clock) -> None:
    """One small Cycles frame, saved, with the machine and the caps set on its Cloud Render panel."""
    import bpy

    from dev import addon_harness as harness

    path = harness.make_scene(
        check.out / "scene" / "aws_check.blend", frames=1, size=FRAME_SIZE, samples=SAMPLES
    )
    scene: Any = bpy.context.scene  # fake-bpy-module knows neither Optional's absence nor our properties
    if check.module.addon.prices.catalog().get(check.instance_type).is_gpu:
        scene.cycles.device = "GPU"
    cloud = scene.cloud_render
    cloud.region = check.region
    cloud.instance_type = check.instance_type
    cloud.use_spot = False
    cloud.machines = 1
    cloud.quote_first = False
    cloud.max_cost = check.max_cost
    cloud.max_hours = max_hours_for(check.max_cost, check.price)
    bpy.ops.wm.save_mainfile()
    clock.step(
        "scene made",
        f"{path.name}: 1 frame, {FRAME_SIZE}x{FRAME_SIZE}, {SAMPLES} samples, Cycles {scene.cycles.device}; "
        f"Max Cost ${cloud.max_cost:.2f}, Max Hours {cloud.max_hours:g}",
    )


def launch_floor(price: float, overhead_s: float, min_machine_s: float) -> float:
    """The least cap, rounded up to the cent, that Cloud Render launches this price with."""
    return math.ceil((overhead_s + min_machine_s) * price / 3600 * 100 - 1e-9) / 100


def check_caps(check: Check) -> str:
    """The confirmation the artist would read, when its worst case and the launch's own cap
    check are within --max-cost; raises Refused otherwise (nothing has been launched)."""
    import bpy

    module = check.module
    text = str(module.addon.submit.confirmation_text(bpy.context))
    found = AT_MOST.search(text)
    if found is None:
        raise Refused(f"The confirmation names no worst case, so the cap cannot be checked:\n{text}")
    worst = float(found.group(1))
    if worst > check.max_cost + 1e-9:
        raise Refused(
            f"The confirmation's worst case is ${worst:.2f}, over the check's cap of ${check.max_cost:.4g} "
            f"(Max Cost cannot go under $0.05, Max Hours under 0.1 h; {check.instance_type} costs "
            f"${check.price:.3f}/h). Nothing was launched."
        )
    scene: Any = bpy.context.scene
    cloud = scene.cloud_render
    caps = module.cloud.cost.caps
    overhead = module.cloud.job.cloud_steps.BOOT_OVERHEAD_S
    try:  # what the job thread checks before launch: the dead-man timer must leave render time
        caps.cap_seconds(cloud.max_cost, cloud.max_hours, check.price, overhead)
    except module.cloud.errors.CloudError as error:
        least = launch_floor(check.price, overhead, caps.MIN_MACHINE_S)
        raise Refused(
            f"Cloud Render launches a {check.instance_type} (${check.price:.3f}/h) only with a cap of at "
            f"least ${least:.2f}: it allows {overhead / 60:g} minutes for the boot and at least "
            f"{caps.MIN_MACHINE_S / 60:g} of rendering after it, and refuses a lower cap ({error.code}). "
            f"Run again with --max-cost {least:.2f} to check this account. Nothing was launched."
        ) from error
    return text


# --- Render in Cloud and what follows -----------------------------------------------------------


class StageWatch:
    """When the job reached each point, from the live view and (for the launch) its record."""

    def __init__(self, check: Check, pressed: float) -> None:
        self.check = check
        self.at: dict[str, float] = {"pressed": pressed}
        self.seen = ""
        self._next_record_read = 0.0

    def _mark(self, point: str) -> None:
        self.at.setdefault(point, time.monotonic())

    def _launched(self, force: bool) -> bool:
        """The record names the machine once EC2 accepted the launch (read at most twice a
        second while the job runs, and once more when it has ended)."""
        now = time.monotonic()
        if now < self._next_record_read and not force:
            return False
        self._next_record_read = now + 0.5
        record = self.check.module.addon.pump.manager().store.load(self.check.job_id)
        return bool(record.launch_id)

    def frame_file(self) -> Path | None:
        output = self.check.module.addon.job_view.output_folder(self.check.job_id)
        files = sorted(p for p in Path(output).rglob("*") if p.is_file()) if output else []
        return files[0] if files else None

    def __call__(self) -> bool:
        view = self.check.module.addon.job_view.view()
        state = str(view.state)
        final = state in FINAL_STAGES
        if state != self.seen:
            self.seen = state
            print(f"    [{time.monotonic() - self.at['pressed']:6.1f}s] {state}: {view.message}", flush=True)
        if state not in ("", "packing", "uploading"):
            self._mark("starting")
        if "starting" in self.at and "launched" not in self.at and self._launched(force=final):
            self._mark("launched")
        if state in ("rendering", "downloading", "done") or int(view.frames_done) > 0:
            self._mark("rendering")
        if state == "done" and self.frame_file() is not None:
            self._mark("back")
        return final

    def between(self, start: str, end: str) -> float | None:
        if start in self.at and end in self.at:
            return self.at[end] - self.at[start]
        return None


def print_stage_steps(watch: StageWatch, check: Check, instance_id: str) -> None:
    """upload, launch, boot to first frame, frame back: each from the stage changes it spans."""
    spans = (
        ("upload", "pressed", "starting", "packed and uploaded the scene (Packing, Uploading)"),
        ("launch", "starting", "launched", f"EC2 accepted the launch: {instance_id or 'no machine'}"),
        ("boot to first frame", "launched", "rendering", "boot, Blender, the scene, rendering"),
        ("frame back", "rendering", "back", f"Done, the frame is in {watch.frame_file() or 'no file'}"),
    )
    for name, start, end, what in spans:
        seconds = watch.between(start, end)
        if seconds is None:
            print(f"{name}: -  not reached", flush=True)
        else:
            print(f"{name}: {seconds:.1f}  {what}", flush=True)


def press_render(check: Check, timeout: float) -> tuple[StageWatch, Any]:
    """Render in Cloud, then the add-on's main-thread pump until the job ends; the job is
    cancelled (and followed to its end) if it does not end in time or the check is stopped."""
    import bpy

    from dev import addon_harness as harness

    module = check.module
    ops: Any = bpy.ops  # the add-on's operators are registered at run time
    if ops.cloud_render.render("EXEC_DEFAULT") != {"FINISHED"}:
        blockers = module.addon.submit.render_blockers(bpy.context)
        raise Failed("Render in Cloud did not start: " + (" ".join(blockers) or "see the messages above"))
    check.job_id = str(module.addon.job_view.view().job_id)
    watch = StageWatch(check, time.monotonic())
    try:
        harness.drain_until(watch, timeout)
    except BaseException as stop:  # a machine may be running: never leave without ending it
        why = f"it did not end in {timeout:.0f} s" if isinstance(stop, TimeoutError) else words(stop)
        print(f"Cancelling the job: {why}", flush=True)
        module.addon.pump.manager().cancel(check.job_id)
        harness.drain_until(lambda: str(module.addon.job_view.view().state) in FINAL_STAGES, CANCEL_WAIT_S)
        if not isinstance(stop, (TimeoutError, KeyboardInterrupt)):
            raise
    return watch, module.addon.pump.manager().store.load(check.job_id)


def refusal_lines(check: Check) -> list[str]:
    log = check.module.addon.job_view.log_lines(check.job_id)
    return [line for line in log if REFUSAL.search(line)]


def machines_left(check: Check, settings: Any) -> list[str]:
    """The job's machines not yet terminated or shutting down, after giving them time to end;
    one still there is terminated here, so the check never leaves a machine billing."""
    module = check.module
    here = settings.in_region(check.region)
    deadline = time.monotonic() + GONE_WAIT_S
    left = list(module.cloud.aws.compute.find_job_instances(here, check.job_id))
    while left and time.monotonic() < deadline:
        time.sleep(2.0)
        left = list(module.cloud.aws.compute.find_job_instances(here, check.job_id))
    for instance_id in left:
        print(f"Terminating {instance_id}: it was still running after the job ended.", flush=True)
        module.cloud.aws.compute.terminate(here, instance_id)
    return left


def render_and_report(check: Check, settings: Any, timeout: float) -> None:
    """Press Render in Cloud and print the four stage steps, the cost, and what AWS refused."""
    watch, record = press_render(check, timeout)
    print_stage_steps(watch, check, record.launch_id)
    check.cost = float(record.cost_so_far)
    print(
        f"cost: ${record.cost_so_far:.4f} so far at ${record.price_per_hour:.3f}/h "
        f"(cap ${record.max_cost:.2f} or {record.max_hours:g} h)"
    )
    print(f"final stage: {record.stage_enum.label}")  # the words the panel shows
    check.refusals += refusal_lines(check)
    for line in check.refusals:
        print(f"AWS refused: {line}")
    if record.stage != "done":
        print(f"job message: {record.message}")
        print(f"job action: {record.action}")
    left = machines_left(check, settings)
    print(f"machines left running: {', '.join(left) + ' (terminated now)' if left else 'none'}")
    check.ok = record.stage == "done" and watch.frame_file() is not None and "back" in watch.at


# --- the whole check ------------------------------------------------------------------------------


def words(exc: BaseException) -> str:
    """An error as the add-on words it (CloudError: message and action), else its type and text."""
    message, action = getattr(exc, "message", ""), getattr(exc, "action", "")
    if message:
        return f"{message} {action}".strip()
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def account_for(
    args: argparse.Namespace, module: Any, clock: Clock, out: Path
) -> Iterator[Callable[[], Any]]:
    """The account connected in the preferences; yields what to enter around Render in Cloud
    (the instance simulator on the emulated account, nothing on a real one)."""
    if not args.emulated:
        connect_real(module, args)
        yield contextlib.nullcontext
        return
    from dev.demo_common import cache_blender, set_up_as_artist
    from dev.emulator import emulated_account
    from dev.simulator import InstanceSimulator

    with emulated_account(moto_url=args.moto_url or None, log_path=out / "emulator.log") as account:
        try:
            set_up_as_artist(account, module)
            clock.note(
                f"emulated account at {account.url}: IAM user with both policies, Set Up, Set Up policy detached"
            )
            manager = module.addon.pump.manager()
            bucket, version = cache_blender(manager, manager.settings_for())
            clock.note(f"Blender {version} staged in {bucket}'s cache, as a machine's first boot leaves it")
            yield lambda: InstanceSimulator(account.url, work_root=out / "machines")
        finally:
            for line in strict_layer_refusals(account.url):
                print(f"strict layer refused: {line}", flush=True)


def strict_layer_refusals(url: str) -> list[str]:
    """What the emulated account's strict layer refused the artist (its decision log), the
    emulated stand-in for what AWS would refuse; empty when the log cannot be read (plain moto)."""
    import requests

    try:
        answer = requests.get(f"{url}/strict-api/decisions", timeout=10)
        decisions = answer.json() if answer.ok else []
    except (requests.RequestException, ValueError):
        return []
    if isinstance(decisions, dict):
        decisions = decisions.get("decisions", [])
    return [
        f"{d.get('operation')}: {d.get('action')} on {d.get('resource')} ({d.get('principal')})"
        for d in decisions
        if isinstance(d, dict) and not d.get("allowed", True)
    ]


def install(clock: Clock, out: Path) -> Any:
    """The extension built with Blender's tool and installed from its zip, as "Install from Disk"."""
    import bpy

    from dev import addon_harness as harness
    from dev.build import build, zip_for_this_platform

    zip_path = zip_for_this_platform(build(out / "dist"))
    module = harness.install(zip_path)
    clock.note(f"{zip_path.name} installed in Blender {bpy.app.version_string} (bpy module)")
    return module


def run(args: argparse.Namespace, check: Check, clock: Clock) -> None:
    """Every step in order, filling `check`; raises Refused or Failed where the check stops."""
    out = check.out
    module = check.module = install(clock, out)
    with account_for(args, module, clock, out) as around_render:
        check.region = str(module.addon.account.preferences().default_region)
        settings = verify_keys(check, clock)
        find_set_up(check, clock, settings)
        choose_machine(check, clock, settings)
        make_scene(check, clock)
        print("\n" + check_caps(check) + "\n", flush=True)
        timeout = (
            EMULATED_TIMEOUT_S
            if args.emulated
            else max_hours_for(check.max_cost, check.price) * 3600 + FOLLOW_MARGIN_S
        )
        with around_render():
            render_and_report(check, settings, timeout)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(plan_text(args), flush=True)
    why_not = refuse_to_start(args)
    if why_not:
        print(why_not)
        return 2
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="cloud-render-aws-check-"))
    out.mkdir(parents=True, exist_ok=True)
    user_dir = isolate(args.emulated)
    print(f"Working in {out}\n", flush=True)
    clock = Clock()
    check = Check(module=None, emulated=args.emulated, max_cost=args.max_cost, out=out)
    code = 1
    try:
        run(args, check, clock)
        code = 0 if check.ok else 1
    except Refused as refused:
        print(f"Refused: {refused}")
        code = 2
    except (Failed, SystemExit) as failed:
        print(f"Failed: {failed}")
    except Exception as exc:  # unforeseen: the words and where, for the issue
        traceback.print_exc(file=sys.stdout)
        print(f"Failed: {words(exc)}")
    finally:
        if not args.emulated:  # the encrypted keys of a real account stay nowhere
            shutil.rmtree(user_dir, ignore_errors=True)
    print(result_line(code == 0, clock.total(), check.cost, check.instance_type, check.region))
    return code


if __name__ == "__main__":
    sys.exit(main())
