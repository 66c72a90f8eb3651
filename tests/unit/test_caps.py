"""Caps: max cost and max hours become the dead-man timer and URL expiry; what is billed, and the
one rule (`cap_reached`) both engines stop their machines by."""

from __future__ import annotations

import pytest

from cloud.cost.caps import (
    STOP_MARGIN_S,
    WorstCase,
    billed_usd,
    cap_limits,
    cap_reached,
    cap_seconds,
    dead_man_minutes,
    machine_share_seconds,
    url_expiry_seconds,
    worst_case,
)
from cloud.errors import CloudError
from cloud.job.batch_engine import BATCH_OVERHEAD_S, BatchEngine
from cloud.job.cloud_steps import BOOT_OVERHEAD_S
from cloud.job.ec2_engine import Ec2Engine
from tests.factories import job_record


def test_cost_cap_converts_to_seconds() -> None:
    # $2 at $0.526/h is 13688 s of machine; 180 s of boot happen before the timer is set.
    assert cap_seconds(2.0, 0, 0.526, 180) == 13688 - 180
    # The hours cap wins when it is tighter.
    assert cap_seconds(2.0, 1.0, 0.526, 180) == 3600 - 180
    limits = cap_limits(2.0, 1.0, 0.526, 180)
    assert limits.machine_seconds == 3420
    assert limits.dead_man_minutes == 57
    assert limits.url_expiry_s == 3420 + 180 + 600
    # Whatever the timer allows, boot overhead included, never costs more than the cap.
    seconds = cap_seconds(5.0, 0, 3.0, 120)
    assert (dead_man_minutes(seconds) * 60 + 120) * 3.0 / 3600 <= 5.0


def test_url_expiry_is_capped_at_seven_days() -> None:
    assert url_expiry_seconds(30 * 24 * 3600, 300) == 7 * 24 * 3600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1.0, 0, 0.0, 60), "The price of this machine type is unknown, so the cost cap cannot be enforced."),
        ((0, 0, 1.0, 60), "This job has no cost or time cap."),
        ((0.05, 0, 3.0, 60), "The cap is too low to start a machine of this type."),
    ],
)
def test_unusable_caps_are_explained(args: tuple[float, float, float, float], message: str) -> None:
    with pytest.raises(CloudError) as info:
        cap_seconds(*args)
    assert info.value.message == message
    assert info.value.action


def test_too_low_cap_names_the_minimum() -> None:
    with pytest.raises(CloudError) as info:
        cap_seconds(0.05, 0, 3.0, 60)
    assert info.value.action == "Raise the maximum cost to at least $0.30 or pick a cheaper machine type."


def test_billing_counts_every_machine_at_least_a_minute() -> None:
    # $3.60/h is $0.001 a second.
    assert billed_usd([10.0], 3.6) == pytest.approx(0.06)  # the first minute is billed in full
    assert billed_usd([600.0], 3.6) == pytest.approx(0.6)
    assert billed_usd([600.0, 5.0, 0.0], 3.6) == pytest.approx(0.72)  # three machines, two short
    assert billed_usd([], 3.6) == 0.0


def test_one_machine_is_stopped_a_stop_before_its_cost_cap() -> None:
    """$2 at $0.001 a second is 2,000 s of machine. The stop bills up to STOP_MARGIN_S more, so
    the cap counts as reached that long before: the machine's bill stays within Max Cost."""
    price, cap = 3.6, 2.0
    stop_at = 2000 - STOP_MARGIN_S
    assert not cap_reached(billed_usd([stop_at - 1], price), stop_at - 1, 1, price, cap, 0)
    assert cap_reached(billed_usd([stop_at], price), stop_at, 1, price, cap, 0)
    assert billed_usd([stop_at + STOP_MARGIN_S], price) <= cap
    # Max Hours the same way: a stop before the hour, not an hour and a stop.
    assert not cap_reached(0.0, 3600 - STOP_MARGIN_S - 1, 1, price, 0, 1.0)
    assert cap_reached(0.0, 3600 - STOP_MARGIN_S, 1, price, 0, 1.0)
    # A cap of 0 is no cap of that kind (the other holds): never reached by it.
    assert not cap_reached(100.0, 10.0, 1, price, 0.0, 2.0)
    assert not cap_reached(0.01, 10 * 3600.0, 1, price, 5.0, 0.0)


def test_n_machines_share_the_cost_cap_and_each_keeps_the_hours_cap() -> None:
    # $2 over 4 machines at $0.50/h: $0.50 each is 1 h of machine, boot included.
    assert machine_share_seconds(2.0, 10.0, 0.5, 1080, 4) == 3600 - 1080
    # Four machines that each run to their own limit (boot included) spend the cap, not 4x it.
    assert 4 * (machine_share_seconds(2.0, 10.0, 0.5, 1080, 4) + 1080) * 0.5 / 3600 == pytest.approx(2.0)
    # The hours cap holds for each machine as it is: they run side by side.
    assert machine_share_seconds(10.0, 2.0, 0.5, 1080, 4) == 7200 - 1080
    # One machine: the whole cap, as before.
    assert machine_share_seconds(2.0, 10.0, 0.5, 1080, 1) == cap_seconds(2.0, 10.0, 0.5, 1080)
    with pytest.raises(CloudError) as low:
        machine_share_seconds(0.5, 2.0, 0.5, 1080, 8)
    assert low.value.message == "The cost cap is too low to start 8 machines of this type."
    assert low.value.action.startswith("Raise the maximum cost to at least $1.54, use fewer machines")


def test_the_worst_case_is_the_lower_of_the_cost_cap_and_n_machines_time_cap() -> None:
    assert worst_case(10.0, 2.0, 0.5, 1) == WorstCase(1.0, by_cost_cap=False)
    assert worst_case(10.0, 2.0, 0.5, 4) == WorstCase(4.0, by_cost_cap=False)
    assert worst_case(3.0, 2.0, 0.5, 4) == WorstCase(3.0, by_cost_cap=True)
    assert worst_case(0.0, 2.0, 0.5, 4) == WorstCase(4.0, by_cost_cap=False)  # no cost cap set


def test_each_batch_machine_gets_its_share_and_one_machine_the_whole_cap(tmp_path) -> None:
    record = job_record(
        tmp_path,
        frames=list(range(1, 101)),
        price_per_hour=0.5,
        max_cost=4.0,
        max_hours=6.0,
        machines=4,
    )
    # $1 each at $0.50/h: 2 h of machine each, Batch's scaling and the boot included.
    assert BatchEngine().machine_cap_seconds(record) == 7200 - BATCH_OVERHEAD_S
    assert Ec2Engine().machine_cap_seconds(record) == 6 * 3600 - BOOT_OVERHEAD_S


def test_many_machines_reach_the_cost_cap_a_stop_earlier_each() -> None:
    # $0.50/h: a minute of stopping is $0.0083 a machine; eight of them, $0.067.
    assert not cap_reached(0.90, 60.0, 8, 0.5, 1.0, 0)
    assert cap_reached(0.94, 60.0, 8, 0.5, 1.0, 0)
    assert not cap_reached(0.94, 60.0, 1, 0.5, 1.0, 0)  # one machine still has its minute
    assert cap_reached(1.0, 60.0, 0, 0.5, 1.0, 0)  # none live: the cap itself
    assert not cap_reached(100.0, 60.0, 8, 0.5, 0.0, 0)  # no cost cap set


def test_the_lowest_cap_said_is_itself_enough():
    """ "At least $X" is rounded up to the cent: the sum it names launches."""
    price, overhead = 0.34, 900.0
    with pytest.raises(CloudError) as caught:
        cap_seconds(0.05, 0, price, overhead)
    said = float(caught.value.action.split("$", 1)[1].split(" ", 1)[0])
    assert said == 0.12
    assert cap_seconds(said, 0, price, overhead) >= 300
    with pytest.raises(CloudError):
        cap_seconds(said - 0.01, 0, price, overhead)
