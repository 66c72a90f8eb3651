"""How fast frames come down (issue 25 item 4, "Frames back"): the rate's arithmetic, and the
rate and bytes the job thread measures as frames land in the emulated bucket (moto over HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.job.download_rate import DownloadRate, busy_seconds
from cloud.job.events import FrameArrived
from cloud.machine import contract
from tests.images import png
from tests.unit.test_machine_output import drained, followed_job


def test_nothing_downloaded_has_no_rate():
    rate = DownloadRate()
    assert (rate.rate(), rate.frames, rate.total_bytes) == (0.0, 0, 0)


def test_the_rate_is_bytes_over_the_time_spent_downloading():
    rate = DownloadRate()
    rate.add(100.0, 102.0, 20_000_000)  # 10 MB/s
    assert rate.rate() == pytest.approx(10_000_000)
    rate.add(105.0, 106.0, 20_000_000)  # the 3 s between them, rendering, count for nothing
    assert rate.rate() == pytest.approx(40_000_000 / 3)
    assert (rate.frames, rate.total_bytes) == (2, 40_000_000)


def test_frames_fetched_side_by_side_count_their_time_once():
    rate = DownloadRate()
    for _ in range(4):  # four frames at once, 2 s each: 40 MB in 2 s, not in 8
        rate.add(10.0, 12.0, 10_000_000)
    assert rate.rate() == pytest.approx(20_000_000)
    assert busy_seconds([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (5.5, 5.7)]) == pytest.approx(4.0)
    assert busy_seconds([]) == 0.0


def test_the_rate_is_over_the_last_ten_seconds_of_downloads_and_holds_between_frames():
    rate = DownloadRate(window_s=10.0)
    rate.add(0.0, 10.0, 10_000_000)  # a slow start: 1 MB/s
    rate.add(100.0, 101.0, 50_000_000)  # now 50 MB/s: the slow frame ended long before
    assert rate.rate() == pytest.approx(50_000_000)
    assert rate.total_bytes == 60_000_000  # the total keeps every frame
    rate.add(105.0, 105.0, 0)  # a download that took no measurable time adds no time
    assert rate.rate() == pytest.approx(50_000_000)


def test_frames_landing_carry_a_positive_rate_and_their_bytes(aws, tmp_path: Path):
    runner, events, machine = followed_job(aws, tmp_path, [1, 2, 3], tmp_path / "renders" / "job")
    plan = [{"name": f"f_{f:04d}.png", "frame": f} for f in (1, 2, 3)]
    machine.put_json("plan.json", {"contract": contract.CONTRACT_VERSION, "frames": plan})
    bodies = {f: png(f, f) for f in (1, 2)}
    for f, body in bodies.items():
        machine.put(f"frames/f_{f:04d}.png", body)
    runner.poll_outputs()
    arrived = [e for e in drained(events) if isinstance(e, FrameArrived)]
    assert sorted(e.frame for e in arrived) == [1, 2]
    last = arrived[-1]
    assert last.frames_downloaded == 2
    assert last.bytes_downloaded == sum(len(b) for b in bodies.values())
    assert last.download_rate > 0
    assert all(e.download_rate > 0 and e.bytes_downloaded > 0 for e in arrived)
    # The next poll brings the next frame as it lands, counted on top.
    machine.put("frames/f_0003.png", png(3, 3))
    runner.poll_outputs()
    (third,) = [e for e in drained(events) if isinstance(e, FrameArrived)]
    assert (third.frame, third.frames_downloaded) == (3, 3)
    assert third.bytes_downloaded == last.bytes_downloaded + len(png(3, 3))
    assert third.download_rate > 0
    out = Path(runner.record.output_dir)
    assert not list(out.rglob("*.part"))  # each frame was renamed into place whole
