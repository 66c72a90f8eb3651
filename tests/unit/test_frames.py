"""Frame lists typed by artists."""

from __future__ import annotations

import pytest

from cloud.errors import CloudError, ErrorCode
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


def test_frames_outside_blenders_range_are_refused_saying_the_range():
    assert parse_frame_list("-1048574,1048574") == [-1048574, 1048574]
    assert parse_frame_list("-3--1") == [-3, -2, -1]
    for text in ("1048575", "-1048575", "99999999999999999999", "1-99999999999999999999", "9" * 5000):
        with pytest.raises(CloudError) as caught:
            parse_frame_list(text)
        assert "outside Blender's frames (-1048574 to 1048574)" in caught.value.message
        assert len(caught.value.message) < 200 and caught.value.action


def test_overlapping_ranges_count_once():
    assert parse_frame_list("1-5,3-8,5") == [1, 2, 3, 4, 5, 6, 7, 8]
    # 2 x 60,000 frames listed, 60,000 different ones: under the 100,000 limit.
    assert len(parse_frame_list("1-60000,1-60000")) == 60000
    assert parse_frame_list("1,,2,") == [1, 2]


HOSTILE = [
    "",
    " ",
    ",",
    ",,,,",
    "99999999999999999999",
    "\u0661\u0662",  # Arabic-Indic digits
    "\u0661-\u0662",
    "1-",
    "--5",
    "-",
    "1x",
    "5-1",
    "1-1000000000x1",
    "1-10x0",
    "1-10x99999999999999999999999",
    "1-10x-2",
    "0x10",
    "1.5",
    "1e3",
    "+5",
    "1 2",
    "1-2-3",
    "\x00",
    "1\n2",
    "\uff11\uff12",  # fullwidth digits
    "nan",
    "inf",
    "-0",
    "1-1048574",
    "-1048574-1048574x2",
    "1-100000," * 50,
    "0" * 10_000 + "1",
    "9" * 10_000,
    "\u202e1-5",
    "1-5\u00a0,\u20037",
]


def _assert_valid_or_refused(text: str) -> None:
    try:
        frames = parse_frame_list(text)
    except CloudError as error:
        assert type(error) is CloudError and error.code == ErrorCode.BAD_FRAME_LIST
        assert error.message.strip() and error.action.strip(), text
        assert len(error.message) < 200, error.message
        return
    assert frames, text
    assert frames == sorted(set(frames)), text
    assert all(type(f) is int and -1048574 <= f <= 1048574 for f in frames), text
    assert len(frames) <= 100_000, text


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_frame_lists_give_frames_or_a_clear_refusal(text):
    _assert_valid_or_refused(text)


def test_random_frame_lists_give_frames_or_a_clear_refusal():
    """Property-style: thousands of random strings built from the list's own alphabet and beyond."""
    import random

    rng = random.Random(20250101)
    atoms = [
        *"0123456789",
        "-",
        ",",
        "x",
        "X",
        ":",
        " ",
        "\t",
        "\u0661",
        "\u0663",
        "\uff11",
        "²",
        "½",
        "ⅷ",
        ".",
        "e",
        "+",
        "\x00",
        "99999999999999999999",
        "1048574",
        "1048575",
        "-1048574",
        "100000",
    ]
    for _ in range(5000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 24)))
        _assert_valid_or_refused(text)
