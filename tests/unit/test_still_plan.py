"""A still's samples cut into parts (cloud/job/still_plan.py), the engine chosen for it, and the
spec's still section as the machine reads it (contract.parse_still)."""

from __future__ import annotations

import itertools

import pytest

from cloud.job.records import EngineName, engine_name_for
from cloud.job.still_plan import MIN_PART_SAMPLES, PARTS_PER_MACHINE_SPOT, Part, split_samples
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
def test_parts_cover_every_sample_once_and_differ_by_one_at_most(total, machines, spot):
    parts = split_samples(total, machines, spot)
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
