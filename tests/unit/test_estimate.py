"""Estimates from a local probe, the measured ranking from issue 7, measured pace and quotes."""

from __future__ import annotations

import pytest

from cloud.cost.catalog import load_catalog
from cloud.cost.estimate import (
    FRAME_OVERHEAD_S,
    Probe,
    estimate_all,
    estimate_for,
    local_cpu_speed,
    plan_probe,
    probe_render_seconds,
    quote_from_scouts,
    with_measured,
)
from cloud.errors import CloudError

FRAME = 1920 * 1080


def probe_for(full_frame_local_s: float, local_speed: float, samples: int = 512) -> Probe:
    """A probe on a 1/16 tile at 16 samples that extrapolates to `full_frame_local_s`."""
    tile = FRAME // 16
    seconds = full_frame_local_s * (tile * 16) / (FRAME * samples)
    return Probe(seconds, tile, 16, FRAME, samples, local_speed)


def test_probe_scales_by_samples_and_pixels() -> None:
    probe = Probe(
        seconds=2.0, pixels=FRAME // 16, samples=16, frame_pixels=FRAME, frame_samples=128, local_speed=176
    )
    assert probe.local_frame_seconds() == pytest.approx(2.0 * 16 * 8)
    with_sync = Probe(2.0, FRAME // 16, 16, FRAME, 128, 176, sync_seconds=1.0)
    assert with_sync.local_frame_seconds() == pytest.approx(1.0 * 16 * 8 + 1.0)
    assert probe_render_seconds(probe) == probe.local_frame_seconds()
    assert local_cpu_speed(8) == 176
    plan = plan_probe(1920, 1080, samples=512)
    assert (plan.border_min_x, plan.border_max_x) == (0.375, 0.625)
    assert plan.pixels == 480 * 270 and plan.samples == 16
    assert plan_probe(100, 100, samples=4).samples == 4
    with pytest.raises(CloudError) as info:
        Probe(0, 100, 16, FRAME, 128, 176).local_frame_seconds()
    assert info.value.message == "The test render did not give a usable time."
    assert info.value.action


def test_measured_ranking_from_issue_7() -> None:
    """g4dn.xlarge 58 s at $0.66/h, p3.2xlarge 27 s at $3.82/h, c5.2xlarge 7 min 58 s at $0.39/h,
    m5.2xlarge 9 min 13 s, r5b.large 36 min 25 s (512 samples): same cost-per-frame ranking."""
    reference = load_catalog().reference
    assert set(reference) == {"g4dn.xlarge", "p3.2xlarge", "c5.2xlarge", "m5.2xlarge", "r5b.large"}
    assert (reference["c5.2xlarge"].seconds_per_frame, reference["r5b.large"].seconds_per_frame) == (
        478,
        2185,
    )
    measured_order = sorted(
        reference, key=lambda n: reference[n].seconds_per_frame * reference[n].price_per_hour
    )
    assert measured_order == ["g4dn.xlarge", "p3.2xlarge", "c5.2xlarge", "m5.2xlarge", "r5b.large"]
    assert reference["g4dn.xlarge"].seconds_per_frame * 0.66 / 3600 == pytest.approx(0.011, abs=0.0005)
    assert pytest.approx(0.029, abs=0.0005) == 27 * 3.82 / 3600
    assert pytest.approx(0.052, abs=0.0005) == 478 * 0.39 / 3600

    # Relative speeds matching the measurements (speed ~ 1 / time), T4 = its Open Data score.
    t4 = load_catalog().get("g4dn.xlarge").speed
    speeds = {n: t4 * 58 / (r.seconds_per_frame - FRAME_OVERHEAD_S) for n, r in reference.items()}
    local_speed = local_cpu_speed(8)
    probe = probe_for((58 - FRAME_OVERHEAD_S) * t4 / local_speed, local_speed)
    estimates = [estimate_for(probe, 100, n, speeds[n], r.price_per_hour) for n, r in reference.items()]
    for est in estimates:
        assert est.seconds_per_frame == pytest.approx(reference[est.instance_type].seconds_per_frame, rel=0.1)
    estimated_order = [e.instance_type for e in sorted(estimates, key=lambda e: e.cost_per_frame)]
    assert estimated_order == measured_order

    # The catalog's own speeds for the launchable types keep the measured order too.
    catalog = load_catalog()
    own = [
        estimate_for(probe, 100, n, catalog.get(n).speed, reference[n].price_per_hour)
        for n in ("g4dn.xlarge", "c5.2xlarge", "m5.2xlarge")
    ]
    assert [e.instance_type for e in sorted(own, key=lambda e: e.cost_per_frame)] == [
        "g4dn.xlarge",
        "c5.2xlarge",
        "m5.2xlarge",
    ]


def test_estimate_all_ranges_and_marks() -> None:
    probe = probe_for(full_frame_local_s=600, local_speed=local_cpu_speed(8), samples=256)
    estimates = estimate_all(probe, frames=240, region="us-east-1")
    names = [e.instance_type for e in estimates]
    assert "g7e.2xlarge" in names and "p3.2xlarge" not in names
    assert [e.total_cost for e in estimates] == sorted(e.total_cost for e in estimates)
    cheapest = [e for e in estimates if e.cheapest]
    fastest = [e for e in estimates if e.fastest]
    assert len(cheapest) == 1 and cheapest[0] is estimates[0]
    assert len(fastest) == 1 and fastest[0].total_seconds == min(e.total_seconds for e in estimates)
    assert fastest[0].instance_type == "g7e.2xlarge" or fastest[0].instance_type.startswith(
        ("p5", "g6e", "p4d")
    )
    for e in estimates:
        assert e.low.total_seconds < e.total_seconds < e.high.total_seconds
        assert e.low.total_cost < e.total_cost < e.high.total_cost
        assert e.cost_per_frame == pytest.approx(e.seconds_per_frame * e.price_per_hour / 3600)
        assert e.total_seconds > 240 * e.seconds_per_frame  # boot and install are counted
    # Regional prices and explicit prices are used.
    eu = estimate_all(probe, frames=240, region="eu-west-1")
    assert "g7e.2xlarge" not in [e.instance_type for e in eu]
    spot = estimate_all(probe, 240, "us-east-1", spot=True, prices={"g4dn.xlarge": 0.2, "g5.xlarge": 0.4})
    assert {e.instance_type for e in spot} == {"g4dn.xlarge", "g5.xlarge"}
    assert next(e for e in spot if e.instance_type == "g4dn.xlarge").price_per_hour == 0.2
    # A scene that needs 30 GiB of GPU memory leaves out the 16 and 24 GiB GPUs.
    big = {e.instance_type for e in estimate_all(probe, 240, "us-east-1", min_gpu_memory_gib=30)}
    assert "g4dn.xlarge" not in big and "g5.12xlarge" not in big
    assert {"g6e.xlarge", "g7e.2xlarge", "p5.48xlarge", "c5.2xlarge"} <= big


def test_measured_pace_replaces_the_estimate() -> None:
    probe = probe_for(full_frame_local_s=600, local_speed=local_cpu_speed(8))
    before = estimate_for(probe, 100, "g4dn.xlarge", 1459, 0.526)
    after = with_measured(before, seconds_per_frame=40.0, frames_done=20, frames_total=100, elapsed_s=1000)
    assert after.measured and after.seconds_per_frame == 40.0
    assert after.total_seconds == pytest.approx(1000 + 80 * 40)
    assert after.total_cost == pytest.approx((1000 + 80 * 40) * 0.526 / 3600)
    assert after.low.total_seconds < after.total_seconds < after.high.total_seconds
    assert with_measured(before, 0, 0, 100, 10) == before  # no frame timed yet: keep the estimate


def test_quote_from_scouts() -> None:
    quote = quote_from_scouts(
        [50.0, 70.0, 60.0], frames_total=300, price_per_hour=0.72, overhead_s=240, cap=5.0
    )
    assert quote.seconds_per_frame == pytest.approx(60.0)
    assert quote.cost_per_frame == pytest.approx(0.012)
    assert quote.projected_total == pytest.approx((240 + 300 * 60) * 0.72 / 3600)
    assert quote.under_cap  # $3.65 under $5
    over = quote_from_scouts(
        [50.0, 70.0, 60.0], frames_total=300, price_per_hour=0.72, overhead_s=240, cap=3.0
    )
    assert not over.under_cap
    with pytest.raises(CloudError) as info:
        quote_from_scouts([], 300, 0.72, 240, 5.0)
    assert info.value.message == "No scout frame finished, so there is no price to show."
    assert info.value.action
