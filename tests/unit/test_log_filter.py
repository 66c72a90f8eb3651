"""The panel's log keeps stage lines, errors and finished frames, and drops renderer noise."""

from __future__ import annotations

from cloud.job.log_filter import for_people

RAW = [
    "[cloud-render] Machine i-0abc requested (on-demand).",
    "Fra: 6 | Mem: 1M | Updating Scene BVH | Building",
    "Fra:1 Mem:12.00M (Peak 14.00M) | Time:00:00.10 | Sample 3/8",
    'CLOUDRENDER {"event": "frame_done", "frame": 6, "seconds": 0.011}',
    "00:00.389  render           | Saved: '/tmp/run/out/frames/0006.png'",
    "[cloud-render 06:53:57] frame 6 uploaded (2.5 kB) as frames/0006.png",
    "Traceback (most recent call last):",
    '  File "render_frames.py", line 3, in <module>',
    "00:00.412  render           | RuntimeError: Error: Cannot read file",
    "[cloud-render] Done: 6 frames rendered.",
]


def test_people_see_stages_errors_and_frames_not_noise():
    assert for_people(RAW, keep=0) == [
        "Machine i-0abc requested (on-demand).",
        "06:53:57 frame 6 uploaded (2.5 kB) as frames/0006.png",
        "RuntimeError: Error: Cannot read file",
        "Done: 6 frames rendered.",
    ]


def test_only_the_last_lines_are_kept():
    assert for_people(RAW, keep=2) == ["RuntimeError: Error: Cannot read file", "Done: 6 frames rendered."]


def test_a_line_listing_thousands_of_frames_is_cut_for_the_panel():
    """The real window showed a stopped 6000-frame job's panel filled by one line of frame numbers."""
    from cloud.job.log_filter import PANEL_LINE_CHARS

    left = ", ".join(str(frame) for frame in range(2, 6000))
    line = f"[cloud-render 10:27:17] job interrupted: 3 frames done, frames left [{left}]"
    (shown,) = for_people([line], keep=0)
    assert shown.startswith("10:27:17 job interrupted: 3 frames done") and shown.endswith("\u2026")
    assert len(shown) == PANEL_LINE_CHARS
