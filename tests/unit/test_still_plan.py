"""A still's samples cut into parts (cloud/job/still_plan.py), the engine chosen for it, and the
spec's still section as the machine reads it (contract.parse_still)."""

from __future__ import annotations

import itertools

import pytest

from cloud.job.records import EngineName, engine_name_for
from cloud.job.still_plan import (
    MIN_PART_SAMPLES,
    MIN_SPOT_PART_SECONDS,
    PARTS_PER_MACHINE_SPOT,
    Part,
    split_samples,
)
from cloud.machine import contract


def covers_once(parts: list[Part], total: int) -> bool:
    ranges = sorted((p.offset, p.offset + p.length) for p in parts)
    return (
        ranges[0][0] == 0
        and ranges[-1][1] == total
        and all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    )


@pytest.mark.parametrize("total", [1, 15, 16, 17, 100, 256, 1000, 4096])
@pytest.mark.parametrize("machines", [1, 2, 3, 8])
@pytest.mark.parametrize("spot", [False, True])
@pytest.mark.parametrize("frame_seconds", [None, 30.0, 3600.0])
def test_parts_cover_every_sample_once_and_differ_by_one_at_most(total, machines, spot, frame_seconds):
    parts = split_samples(total, machines, spot, frame_seconds)
    assert covers_once(parts, total)
    assert [p.index for p in parts] == list(range(len(parts)))
    assert max(p.length for p in parts) - min(p.length for p in parts) <= 1
    assert len(parts) <= machines * (PARTS_PER_MACHINE_SPOT if spot else 1)
    assert all(p.length >= MIN_PART_SAMPLES for p in parts) or len(parts) == 1


def test_spot_cuts_more_parts_than_machines_so_an_interruption_costs_one_part():
    assert len(split_samples(4096, 4, spot=False)) == 4
    assert len(split_samples(4096, 4, spot=True)) == 4 * PARTS_PER_MACHINE_SPOT
    # Few samples: parts no smaller than MIN_PART_SAMPLES, so fewer parts than machines.
    assert [p.length for p in split_samples(40, 8, spot=True)] == [20, 20]


@pytest.mark.parametrize(
    ("frame_seconds", "per_machine"),
    [
        (None, PARTS_PER_MACHINE_SPOT),  # nothing known: the full count, the samples floor only
        (8 * 4 * MIN_SPOT_PART_SECONDS, 4),  # a machine's share is four long parts
        (8 * 4 * MIN_SPOT_PART_SECONDS - 1, 3),  # a quarter would be just short: thirds
        (8 * 2 * MIN_SPOT_PART_SECONDS, 2),
        (8 * MIN_SPOT_PART_SECONDS, 1),  # a share of one minute is not cut
        (51.2, 1),  # the share is seconds: one part a machine, as on demand
        (100 * 3600.0, PARTS_PER_MACHINE_SPOT),  # never more than the full count
    ],
)
def test_spot_cuts_fewer_parts_where_the_expected_time_says_they_would_be_short(frame_seconds, per_machine):
    parts = split_samples(4096, 8, spot=True, frame_seconds=frame_seconds)
    assert len(parts) == 8 * per_machine
    # On demand, one part a machine whatever the estimate.
    assert len(split_samples(4096, 8, spot=False, frame_seconds=frame_seconds)) == 8


def test_the_samples_floor_still_holds_with_an_estimate():
    # Hours of render in 40 samples: parts no smaller than MIN_PART_SAMPLES all the same.
    assert [p.length for p in split_samples(40, 8, spot=True, frame_seconds=36000.0)] == [20, 20]


def test_an_estimate_of_nothing_is_no_estimate():
    assert len(split_samples(4096, 4, spot=True, frame_seconds=0.0)) == 4 * PARTS_PER_MACHINE_SPOT


def test_a_still_is_chosen_for_one_cycles_frame_on_many_machines_only():
    assert engine_name_for(1, 1, "CYCLES") is EngineName.EC2
    assert engine_name_for(4, 1, "CYCLES") is EngineName.STILL
    assert engine_name_for(4, 1, "BLENDER_EEVEE_NEXT") is EngineName.BATCH  # no sample subsets
    assert engine_name_for(4, 12, "CYCLES") is EngineName.BATCH


def still_section(parts: list[Part], total: int) -> dict:
    indexes = [str(p.index) for p in parts]
    return {
        "frame": 7,
        "total_samples": total,
        "parts": [{"index": p.index, "offset": p.offset, "length": p.length} for p in parts],
        "claim_urls": {i: f"https://claim/{i}" for i in indexes},
        "part_urls": {i: f"https://part/{i}" for i in indexes},
        "parts_list_url": "https://list",
        "merge_claim_url": "https://merge",
    }


def test_the_machine_reads_a_still_section_that_covers_the_samples():
    parts = split_samples(100, 3, spot=False)
    still = contract.parse_still(still_section(parts, 100))
    assert (still.frame, still.total_samples) == (7, 100)
    assert [(p.offset, p.length) for p in still.parts] == [(0, 34), (34, 33), (67, 33)]
    assert still.claim_urls["2"] == "https://claim/2"


@pytest.mark.parametrize(
    "broken",
    [
        lambda d: d["parts"].pop(),  # a gap at the end
        lambda d: d["parts"][1].update(offset=30),  # overlapping parts
        lambda d: d["parts"][0].update(length=0),
        lambda d: d["claim_urls"].pop("1"),  # a part nobody can claim
        lambda d: d.update(total_samples=True),
        lambda d: d.update(parts="all"),
    ],
)
def test_a_still_section_that_would_render_a_sample_twice_or_never_is_refused(broken):
    data = still_section(split_samples(100, 3, spot=False), 100)
    broken(data)
    with pytest.raises(contract.ContractError):
        contract.parse_still(data)


def test_what_is_said_after_the_merge_is_what_the_scene_does():
    from cloud.job.still_plan import after_merge

    assert after_merge(True, True) == ("denoised and composited once", "denoising and compositing once")
    assert after_merge(True, False) == ("denoised once", "denoising once")
    assert after_merge(False, True) == ("composited once", "compositing once")
    assert after_merge(False, False) == ("", "")
