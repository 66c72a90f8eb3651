"""The cost map (cloud/cost/cost_map.py): which frames it renders, how it fills the others, how it
reads its Blender's lines (untrusted text), its deadline, and a real map of a real uneven shot."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from cloud.cost.cost_map import CostMap, frame_weights, frames_to_map
from dev.batch_job import cost_map_command, make_uneven_scene


def test_a_short_shot_is_mapped_whole_ends_first():
    assert frames_to_map([1, 2, 3, 4, 5]) == [1, 5, 3, 2, 4]
    assert frames_to_map([7]) == [7]
    assert frames_to_map([]) == []


def test_a_long_shot_is_mapped_evenly_and_a_map_cut_short_still_spans_it():
    frames = list(range(1, 241))
    chosen = frames_to_map(frames, most=24)
    assert len(chosen) == 24 and len(set(chosen)) == 24
    assert chosen[:3] == [1, 240, chosen[2]] and 100 <= chosen[2] <= 140  # the ends, then the middle
    gaps = [b - a for a, b in itertools.pairwise(sorted(chosen))]
    assert max(gaps) - min(gaps) <= 1  # even
    first_five = sorted(chosen[:5])
    assert (
        first_five[0] == 1
        and first_five[-1] == 240
        and max(b - a for a, b in itertools.pairwise(first_five)) < 80
    )


def test_frames_between_measured_ones_are_interpolated_and_beyond_them_held():
    weights = frame_weights({10: 1.0, 20: 3.0}, [5, 10, 15, 20, 25])
    assert weights == {5: 1.0, 10: 1.0, 15: 2.0, 20: 3.0, 25: 3.0}
    assert frame_weights({}, [1, 2]) == {}


def lines_command(tmp_path: Path, text: str, then_sleep: float = 0.0) -> list[str]:
    """A stand-in Blender that prints these lines (what a broken or hostile script could print)."""
    script = tmp_path / "lines.py"
    script.write_text(
        f"import sys, time\nsys.stdout.write({text!r})\nsys.stdout.flush()\ntime.sleep({then_sleep})\n"
    )
    return [sys.executable, str(script)]


def test_lines_that_are_not_a_planned_frame_with_a_finite_time_are_dropped(tmp_path):
    text = "\n".join(
        [
            "Blender 5.0 starting",
            'CLOUDRENDER_COSTMAP {"frame": 1, "seconds": 0.5}',
            'CLOUDRENDER_COSTMAP {"frame": 99, "seconds": 0.5}',  # not a planned frame
            'CLOUDRENDER_COSTMAP {"frame": 2, "seconds": NaN}',
            'CLOUDRENDER_COSTMAP {"frame": 3, "seconds": -1}',
            'CLOUDRENDER_COSTMAP {"frame": "4", "seconds": 1}',
            'CLOUDRENDER_COSTMAP {"frame": 5, "seconds": true}',
            "CLOUDRENDER_COSTMAP not json",
            'CLOUDRENDER_COSTMAP ["a list"]',
            'CLOUDRENDER_COSTMAP {"frame": 6, "seconds": 2.0}',
            'CLOUDRENDER_COSTMAP {"done": true}',
            'CLOUDRENDER_COSTMAP {"frame": 7, "seconds": 9.0}',  # after done: not read
        ]
    )
    costs = CostMap(lines_command(tmp_path, text + "\n"), list(range(1, 9)), budget_s=60)
    try:
        result = costs.result()
    finally:
        costs.stop()
    assert result.measured == {1: 0.5, 6: 2.0}
    assert result.weights[1] == 0.5 and result.weights[6] == 2.0 and result.weights[8] == 2.0
    assert result.weights[3] == pytest.approx(0.5 + 1.5 * 2 / 5)
    assert "Cost map: 2 of 8 frames" in result.said() and "4.0x" in result.said()


def test_the_launch_waits_no_longer_than_the_budget_and_the_map_is_ended(tmp_path):
    command = lines_command(tmp_path, 'CLOUDRENDER_COSTMAP {"frame": 3, "seconds": 1.5}\n', then_sleep=600)
    costs = CostMap(command, [1, 2, 3, 4], budget_s=3.0)
    result = costs.result()  # returns at the deadline with what was measured
    assert result.measured == {3: 1.5}
    assert result.weights == {1: 1.5, 2: 1.5, 3: 1.5, 4: 1.5}
    costs.stop()
    assert costs.process is not None and costs.process.poll() is not None  # nothing left running


def test_a_map_that_fails_leaves_the_job_in_its_order_and_says_why(tmp_path):
    failing = CostMap([sys.executable, "-c", "raise SystemExit(3)"], [1, 2, 3], budget_s=60)
    missing = CostMap([str(tmp_path / "no-blender")], [1, 2, 3], budget_s=60)
    eevee = CostMap(
        lines_command(tmp_path, 'CLOUDRENDER_COSTMAP {"error": "renders Cycles scenes only"}\n'),
        [1, 2],
        budget_s=60,
    )
    try:
        results = [failing.result(), missing.result(), eevee.result()]
    finally:
        for costs in (failing, missing, eevee):
            costs.stop()
    assert all(result.weights == {} for result in results)
    assert results[0].said() == "No cost map (the local render failed): frames go out in the shot's order."
    assert "Blender did not start" in results[1].said()
    assert "Cycles scenes only" in results[2].said()


@pytest.mark.slow
def test_a_real_map_of_an_uneven_shot_finds_its_costliest_frames(tmp_path):
    """The real script in a real Blender (the bpy module): frames 4 and 8 see the most volume."""
    scene = make_uneven_scene(tmp_path / "shot.blend", frames=8)
    costs = CostMap(cost_map_command(scene), list(range(1, 9)), budget_s=240)
    try:
        result = costs.result()
    finally:
        costs.stop()
    assert result.error == "" and sorted(result.measured) == list(range(1, 9)), result
    heavy = (result.measured[4] + result.measured[8]) / 2
    light = (result.measured[1] + result.measured[5]) / 2
    assert heavy > 1.5 * light, result.measured
