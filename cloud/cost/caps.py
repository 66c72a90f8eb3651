"""Hard caps: a job's max cost and max hours turned into limits the machine cannot outlive.

The cap is enforced twice: the add-on stops every machine of the job when `cap_reached` says
so (one rule for one machine and for N), and, if the add-on is gone, the dead-man timer
(`shutdown -h +N`, shutdown behaviour terminate; on Batch, each child's own limit) powers the
machine off. The presigned URLs expire shortly after, so a machine that somehow kept running
could not write anything more.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import CloudError, ErrorCode

MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days
MIN_MACHINE_S = 300  # below this no job can even boot; refuse rather than launch for nothing
URL_MARGIN_S = 600  # signing happens before launch; leave room for the upload and launch


def cents_up(usd: float) -> float:
    """A floor said in dollars and cents, rounded up: "at least $0.11" must itself be enough."""
    return math.ceil(round(usd * 100, 6)) / 100


def cap_seconds(max_cost: float, max_hours: float, price_per_hour: float, overhead_s: float) -> int:
    """Seconds the dead-man timer may allow, counted from when it is set at boot.

    The machine is billed from launch, `overhead_s` before the timer starts (boot until the
    worker runs `shutdown -h +N`, plus the shutdown itself), so that time comes off the budget.
    The tighter of the cost cap and the hours cap wins; 0 or less means "no limit" for that one.
    """
    if price_per_hour <= 0:
        raise CloudError(
            "The price of this machine type is unknown, so the cost cap cannot be enforced.",
            "Refresh prices or pick another machine type.",
            code=ErrorCode.NO_PRICE,
        )
    limits = []
    if max_cost > 0:
        limits.append(max_cost / price_per_hour * 3600.0)
    if max_hours > 0:
        limits.append(max_hours * 3600.0)
    if not limits:
        raise CloudError(
            "This job has no cost or time cap.",
            "Set a maximum cost or a maximum number of hours for the job.",
            code=ErrorCode.NO_CAP,
        )
    seconds = math.floor(min(limits) - max(overhead_s, 0.0))
    if seconds < MIN_MACHINE_S:
        raise CloudError(
            "The cap is too low to start a machine of this type.",
            f"Raise the maximum cost to at least ${cents_up((MIN_MACHINE_S + overhead_s) * price_per_hour / 3600):.2f} "
            "or pick a cheaper machine type.",
            code=ErrorCode.CAP_TOO_LOW,
        )
    return seconds


def machine_share_seconds(
    max_cost: float, max_hours: float, price_per_hour: float, overhead_s: float, machines: int
) -> int:
    """One of N machines' own limit, in seconds after its boot: Max Cost split evenly over the
    machines, Max Hours as it is (they run side by side).

    The add-on stops every machine once their summed cost reaches Max Cost; this share is what
    holds when Blender is closed: N machines that each run to their own limit spend at most
    Max Cost together.
    """
    machines = max(1, machines)
    share = max_cost / machines if max_cost > 0 else max_cost
    try:
        return cap_seconds(share, max_hours, price_per_hour, overhead_s)
    except CloudError as error:
        if error.code != ErrorCode.CAP_TOO_LOW or machines == 1:
            raise
        least = machines * (MIN_MACHINE_S + overhead_s) * price_per_hour / 3600
        raise CloudError(
            f"The cost cap is too low to start {machines} machines of this type.",
            f"Raise the maximum cost to at least ${cents_up(least):.2f}, use fewer machines or pick a cheaper machine type.",
            code=ErrorCode.CAP_TOO_LOW,
        ) from error


@dataclass(frozen=True)
class WorstCase:
    """The most a job can be billed, as its caps are enforced, and which cap sets it."""

    usd: float
    by_cost_cap: bool


def worst_case(max_cost: float, max_hours: float, price_per_hour: float, machines: int = 1) -> WorstCase:
    """min(Max Cost, N x price x Max Hours).

    Max Hours bounds each machine's billed time, boot included (the dead-man timer is set to
    the cap less the boot overhead, and the add-on stops every machine that long after launch),
    and N machines run side by side: N x price x Max Hours. Max Cost bounds all of them
    together (the add-on's sum over every machine, and each machine's 1/N share of it when
    Blender is closed). Not counted, as on one machine: the minute or so a stop takes to end
    the bill; and a spot machine that AWS takes back, which Batch starts again with a fresh
    share while Blender is closed.
    """
    by_time = max(1, machines) * max(price_per_hour, 0.0) * max_hours if max_hours > 0 else math.inf
    if max_cost > 0 and max_cost <= by_time:
        return WorstCase(max_cost, True)
    return WorstCase(by_time, False)


def dead_man_minutes(seconds: int) -> int:
    """`shutdown -h +N` takes whole minutes: round down so the machine stops before the cap."""
    return max(1, seconds // 60)


def url_expiry_seconds(seconds: int, overhead_s: float) -> int:
    """Presigned URLs outlive the machine by the launch overhead and a margin, never more."""
    return int(min(MAX_PRESIGN_S, seconds + max(overhead_s, 0.0) + URL_MARGIN_S))


@dataclass(frozen=True)
class CapLimits:
    machine_seconds: int
    dead_man_minutes: int
    url_expiry_s: int


def cap_limits(max_cost: float, max_hours: float, price_per_hour: float, overhead_s: float) -> CapLimits:
    """Everything a launch needs from the job's caps, in one call."""
    seconds = cap_seconds(max_cost, max_hours, price_per_hour, overhead_s)
    return CapLimits(seconds, dead_man_minutes(seconds), url_expiry_seconds(seconds, overhead_s))


# A stop (TerminateInstances, TerminateJob) ends the bill within about a minute: the cap counts
# as reached that much earlier for every machine still live, so the stop lands before it.
STOP_MARGIN_S = 60.0
# EC2 bills Linux instances per second with a minimum of 60 seconds for each run (EC2 pricing,
# "Per Second Billing"): a machine that ran ten seconds costs a minute.
MIN_BILLED_S = 60.0


def billed_usd(running_seconds: Iterable[float], price_per_hour: float) -> float:
    """What machines cost that have run these many seconds each, at least a minute each."""
    return sum(max(s, MIN_BILLED_S) for s in running_seconds) * max(price_per_hour, 0.0) / 3600.0


def cap_reached(
    cost_so_far: float,
    elapsed_s: float,
    live_machines: int,
    price_per_hour: float,
    max_cost: float,
    max_hours: float,
    stop_margin_s: float = STOP_MARGIN_S,
) -> bool:
    """Stop every machine of the job now? The one rule for one machine and for N.

    Max Cost bounds what they cost together (`cost_so_far`, from `billed_usd`); each live machine
    still bills while it stops, so the cost cap counts as reached `stop_margin_s` of billing per
    live machine earlier. Max Hours bounds the job's time since launch, also a stop earlier.
    0 or less means "no limit" for that one."""
    live = max(live_machines, 0)
    margin_usd = live * stop_margin_s * max(price_per_hour, 0.0) / 3600.0
    by_cost = max_cost > 0 and cost_so_far + margin_usd >= max_cost
    by_time = max_hours > 0 and elapsed_s + (stop_margin_s if live else 0.0) >= max_hours * 3600.0
    return by_cost or by_time
