"""Estimate lines an artist can read in a narrow panel: price and time first, honest ranking."""

from __future__ import annotations

from cloud.cost.estimate import Probe, estimate_all, local_cpu_speed
from cloud.cost.machine_facts import estimate_lines

FRAME = 64 * 36


def test_a_tiny_job_calls_no_expensive_machine_fastest():
    # A 64x36 frame at 4 samples: boot and per-frame overhead dominate on every machine.
    probe = Probe(0.01, FRAME, 4, FRAME, 4, local_cpu_speed(8))
    estimates = estimate_all(probe, frames=6, region="us-east-1")
    fastest = [e for e in estimates if e.fastest]
    assert len(fastest) == 1 and fastest[0].cheapest
    lines = estimate_lines(estimates, "c5.2xlarge")
    assert not any("p5.48xlarge" in line and "fastest" in line for line in lines)


def test_price_and_time_come_first_in_each_line():
    probe = Probe(2.0, FRAME, 4, FRAME, 64, local_cpu_speed(8))
    lines = estimate_lines(estimate_all(probe, frames=240, region="us-east-1"), "g4dn.xlarge")
    assert lines[0].startswith("$") and "g4dn.xlarge" in lines[0] and "[" in lines[0]
    _price, _, rest = lines[0].partition(", ")
    assert rest.split(":")[0].endswith(("min", "h"))
