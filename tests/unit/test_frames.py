"""Frame lists typed by artists."""

from __future__ import annotations

import pytest

from cloud.errors import CloudError
from cloud.job.frame_list import parse_frame_list, preview_first, scene_range


def test_ranges_singles_and_steps():
    assert parse_frame_list("1-5,15,20-30x2") == [1, 2, 3, 4, 5, 15, 20, 22, 24, 26, 28, 30]
    assert parse_frame_list(" 3 , 1-2 , 2 ") == [1, 2, 3]
    assert parse_frame_list("10-14:2") == [10, 12, 14]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("1-", "'1-'"),
        ("abc", "'abc'"),
        ("10-1", "backwards"),
        ("1-5x0", "step"),
        ("1-1000000", "more than"),
    ],
)
def test_malformed_lists_say_what_is_wrong_and_how_to_fix(text, says):
    with pytest.raises(CloudError) as caught:
        parse_frame_list(text)
    assert says in caught.value.message
    assert caught.value.action


def test_preview_first_visits_coarse_frames_first_and_every_frame_once():
    frames = list(range(1, 18))
    order = preview_first(frames)
    assert order[:3] == [1, 9, 17]
    assert order[3:5] == [5, 13]
    assert sorted(order) == frames


def test_scene_range_rejects_empty_range():
    assert scene_range(1, 3) == [1, 2, 3]
    with pytest.raises(CloudError):
        scene_range(5, 1)
