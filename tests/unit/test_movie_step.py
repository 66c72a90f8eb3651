"""The movie step's pure parts: the EGL platform choice, the frame order, and done.json's movie."""

from __future__ import annotations

import pytest

from cloud.machine.assemble_movie import MovieFailed, egl_environment, frames_in_order
from cloud.machine.contract import ContractError, parse_done


def test_egl_platform_is_chosen_and_said(tmp_path):
    nvidia = tmp_path / "nvidiactl"
    assert egl_environment({}, nodes=(str(nvidia),)) == (
        {"EGL_PLATFORM": "surfaceless"},
        "EGL platform: surfaceless (no NVIDIA GPU found; Mesa's EGL)",
    )
    nvidia.write_text("")
    extra, note = egl_environment({}, nodes=(str(nvidia),))
    assert extra == {} and note.startswith("EGL platform: device (NVIDIA GPU found")
    extra, note = egl_environment({"EGL_PLATFORM": "x11"}, nodes=(str(nvidia),))
    assert extra == {} and note == "EGL platform: x11 (set on the machine)"


def test_frames_go_in_by_frame_number_and_all_must_be_here(tmp_path):
    for name in ("shot_0010.png", "shot_0002.png", "shot_0001.png"):
        (tmp_path / name).write_bytes(b"png")
    plan = {"shot_0010.png": 10, "shot_0002.png": 2, "shot_0001.png": 1}
    assert [p.rsplit("/", 1)[-1] for p in frames_in_order(str(tmp_path), plan)] == [
        "shot_0001.png",
        "shot_0002.png",
        "shot_0010.png",
    ]
    with pytest.raises(MovieFailed, match="earlier run"):
        frames_in_order(str(tmp_path), {**plan, "shot_0003.png": 3})


def test_done_json_movie_is_checked():
    done = parse_done({"frames_done": [1], "seconds": 3, "movie": {"name": "shot.mp4", "seconds": 1.5}}, [1])
    assert (done.movie, done.movie_seconds, done.movie_error) == ("shot.mp4", 1.5, "")
    failed = parse_done({"frames_done": [1], "movie_error": "width not divisible by 2\n(63x47)"}, [1])
    assert failed.movie == "" and "divisible by 2" in failed.movie_error and "\n" not in failed.movie_error
    for bad in ("../shot.mp4", "a/shot.mp4", "/etc/passwd.mp4", "shot.exe", "", 7):
        with pytest.raises(ContractError):
            parse_done({"frames_done": [1], "movie": {"name": bad}}, [1])
    with pytest.raises(ContractError):
        parse_done({"frames_done": [1], "movie": "shot.mp4"}, [1])
