"""Machines for a job: the trade-off shown before launch and the N that finishes within a time."""

from __future__ import annotations

from cloud.cost.fleet_plan import (
    BATCH_EXTRA_S,
    BOOT_S,
    STILL_MERGE_S,
    machines_to_finish_within,
    option,
    tradeoff,
    tradeoff_text,
)


def test_more_machines_finish_sooner_for_about_the_same_cost():
    # The shot: 250 frames at 58 s on a g4dn.xlarge ($0.526/h).
    one, eight = option(250, 58.0, 0.526, 1), option(250, 58.0, 0.526, 8)
    assert round(one.minutes) == round((BOOT_S + 250 * 58) / 60)  # about 4 h
    assert eight.minutes < one.minutes / 6
    extra_boots = (8 * (BOOT_S + BATCH_EXTRA_S) - BOOT_S) / 3600 * 0.526
    assert abs((eight.cost - one.cost) - extra_boots) < 1e-9  # the same frames, plus the boots


def test_finish_within_proposes_the_fewest_machines_that_make_it():
    n = machines_to_finish_within(250, 58.0, 60, limit=64)
    assert option(250, 58.0, 0.0, n).minutes <= 60 < option(250, 58.0, 0.0, n - 1).minutes
    assert machines_to_finish_within(250, 58.0, 5, limit=16) == 16  # cannot: as many as allowed
    assert machines_to_finish_within(10, 1.0, 600, limit=16) == 1


def test_the_tradeoff_line_names_one_half_and_all():
    options = tradeoff(250, 58.0, 0.526, 8)
    assert [o.machines for o in options] == [1, 4, 8]
    text = tradeoff_text(options)
    assert text.startswith("1 machine: 4 h ")
    assert text.count("$") == 3 and " \u00b7 4: " in text and " \u00b7 8: " in text


def test_a_still_spreads_its_one_frame_over_the_machines_and_adds_the_merge():
    """One 4K frame of an hour: frames per machine does nothing (one frame is one machine), a
    split by samples divides it, plus the merge on one machine (cloud/job/still_plan.py)."""
    assert option(1, 3600.0, 0.526, 8).machines == 1  # frames: one frame, one machine
    eight = option(1, 3600.0, 0.526, 8, still=True)
    boot = BOOT_S + BATCH_EXTRA_S
    assert eight.machines == 8
    assert abs(eight.minutes - (boot + 3600 / 8 + STILL_MERGE_S) / 60) < 1e-9
    assert abs(eight.cost - (3600 + 8 * boot + STILL_MERGE_S) / 3600 * 0.526) < 1e-9
    n = machines_to_finish_within(1, 3600.0, 30, limit=64, still=True)
    assert (
        option(1, 3600.0, 0.0, n, still=True).minutes
        <= 30
        < option(1, 3600.0, 0.0, n - 1, still=True).minutes
    )
    assert machines_to_finish_within(1, 3600.0, 30, limit=64) == 64  # as frames, it never would
