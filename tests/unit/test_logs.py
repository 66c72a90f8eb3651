"""cloud/machine/blender_logs.py on real Blender output captured from bpy 4.2.23, 5.0.1 and 5.3.0 renders.

Fixtures (tests/fixtures/logs/): `*-render-anim.log` is Blender's own output of
`bpy.ops.render.render(animation=True)` for two 64x64 Cycles frames; `*-worker.log` is the
same scene rendered through cloud/machine/blender_launcher.py and render_frames.py, as on the
render machine (5.x prints no stats at its default log level, so the worker script prints
them in the "Fra: N | ..." form).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.machine.blender_logs import (
    ProgressTracker,
    classify_failure,
    parse_duration,
    parse_line,
    strip_prefix,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def track(name: str) -> tuple[ProgressTracker, list]:
    tracker = ProgressTracker()
    events = [e for line in (FIXTURES / name).read_text().splitlines() if (e := tracker.feed(line))]
    return tracker, events


def test_blender_42_stats_lines():
    tracker, events = track("bpy-4.2.23-render-anim.log")
    progress = [e for e in events if e.kind == "progress"]
    assert {e.frame for e in progress} == {1, 2}
    samples = [(e.frame, e.sample, e.samples) for e in progress if e.sample is not None]
    assert samples[0] == (1, 0, 4) and samples[-1] == (2, 4, 4)
    finished = [e for e in progress if e.status == "Finished"]
    assert [e.frame for e in finished] == [1, 2]
    assert (
        finished[0].elapsed_s == pytest.approx(0.14, abs=0.2)
        and finished[0].peak_mb
        and finished[0].peak_mb > 1
    )
    assert tracker.saved == ["/tmp/render/frame_0001.png", "/tmp/render/frame_0002.png"]


@pytest.mark.parametrize("version", ["5.0.1", "5.3.0"])
def test_blender_5x_timestamped_saved_lines(version):
    tracker, events = track(f"bpy-{version}-render-anim.log")
    assert [e.kind for e in events] == ["saved", "saved"]
    assert tracker.saved == ["/tmp/render/frame_0001.png", "/tmp/render/frame_0002.png"]


@pytest.mark.parametrize("version", ["4.2.23", "5.0.1", "5.3.0"])
def test_worker_output_every_version(version):
    tracker, events = track(f"bpy-{version}-worker.log")
    saved = [e.path.rsplit("/", 1)[-1] for e in events if e.kind == "saved"]
    assert saved == ["frame_0001.png", "frame_0002.png"]
    last_sample = {}
    for event in events:
        if event.kind == "progress" and event.sample is not None:
            last_sample[event.frame] = (event.sample, event.samples)
    assert last_sample == {1: (4, 4), 2: (4, 4)}
    assert tracker.frame == 2


def test_5x_stats_without_frame_take_the_last_frame():
    tracker = ProgressTracker()
    tracker.feed("Fra: 7 | Mem: 2M | Sample 0/16")
    event = tracker.feed("00:03.120  render           | Remaining: 01:02.50 | Mem: 2M | Sample 3/16")
    assert event is not None and (event.frame, event.sample, event.samples) == (7, 3, 16)
    assert event.remaining_s == pytest.approx(62.5)


def test_lines_that_are_not_progress():
    assert parse_line('Info: Saved as "scene.blend"') is None
    assert parse_line('00:00.254  blend            | Read blend: "/tmp/scene.blend"') is None
    assert strip_prefix("00:00.254  blend            | Read blend") == "Read blend"
    error = parse_line('Error: Cannot read file "/tmp/x.png": No such file or directory')
    assert error is not None and error.kind == "error" and error.message.startswith("Cannot read file")


def test_durations():
    assert parse_duration("00:01.50") == pytest.approx(1.5)
    assert parse_duration("01:02:03.25") == pytest.approx(3723.25)
    assert parse_duration("n/a") is None


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (
            "Fra:3 Mem:20000M | Sample 2/128 | CUDA error: Out of memory in cuMemAlloc(&device_pointer, size)",
            "gpu_memory",
        ),
        ("00:05.001  render           | System is out of GPU memory", "gpu_memory"),
        ('Error: Cannot read file "//textures/wood.png": No such file or directory', "missing_file"),
        ("Writing: /tmp/scene.crash.txt", "crash"),
    ],
)
def test_failure_causes(line, kind):
    found, cause = classify_failure(["Fra:1 Mem:10M | Sample 1/4", line, "Blender quit"])
    assert found == kind and cause.endswith(".") and len(cause) < 80


def test_unknown_failure():
    assert classify_failure(["Fra:1 Mem:10M | Sample 1/4"]) == ("", "")


def test_a_whole_job_log_from_the_simulator():
    """The log a job ships (boot script, supervisor, Blender 5.0.1 via the launcher), as the add-on reads it."""
    _, events = track("simulator-job.log")
    saved = [e.path.rsplit("/", 1)[-1] for e in events if e.kind == "saved"]
    assert saved == [name for f in (1, 2, 3) for name in (f"pass_Image{f:04d}.png", f"shot_{f:04d}.png")]
    finished = [e.frame for e in events if e.kind == "progress" and e.status == "Finished"]
    assert finished == [1, 2, 3]
    assert not [e for e in events if e.kind == "error"]


def test_our_scripts_lines_round_trip_through_the_one_protocol(capsys):
    """The scripts inside Blender print with blender_logs.emit (loaded by path, as Blender runs
    them); the supervisor reads with blender_logs.read_event: one MARK, defined once."""
    import runpy

    from cloud.machine import BLENDER_SCRIPTS, blender_logs

    loaded = runpy.run_path(blender_logs.__file__)  # how render_frames.py and the others load it
    loaded["emit"]("frame_done", frame=7, seconds=1.5)
    line = capsys.readouterr().out.strip()
    assert blender_logs.read_event(line) == {"event": "frame_done", "frame": 7, "seconds": 1.5}
    assert blender_logs.read_event("Fra:1 Mem:2M | Sample 1/4") is None
    with pytest.raises(ValueError):
        blender_logs.read_event(blender_logs.MARK + "[1, 2]")
    machine = Path(blender_logs.__file__).parent
    copies = [n for n in (*BLENDER_SCRIPTS, "supervisor.py") if "CLOUDRENDER " in (machine / n).read_text()]
    assert copies == []
