"""The panel's log keeps stage lines, errors and finished frames, and drops renderer noise."""

from __future__ import annotations

from cloud.job.log_filter import for_people

RAW = [
    "[cloud-render] Machine i-0abc requested (on-demand).",
    "Fra:1 Mem:12.00M (Peak 14.00M) | Time:00:00.10 | Sample 3/8",
    '{"state": "rendering", "frame": 1}',
    "Saved: '/root/run/out/frame_0001.png'",
    "Traceback (most recent call last):",
    '  File "render_frames.py", line 3, in <module>',
    "RuntimeError: Error: Cannot read file",
    "[cloud-render] Done: 6 frames rendered.",
]


def test_people_see_stages_errors_and_frames_not_noise():
    lines = for_people(RAW, keep=0)
    assert lines == [
        "Machine i-0abc requested (on-demand).",
        "Saved: '/root/run/out/frame_0001.png'",
        "RuntimeError: Error: Cannot read file",
        "Done: 6 frames rendered.",
    ]


def test_only_the_last_lines_are_kept():
    assert for_people(RAW, keep=2) == ["RuntimeError: Error: Cannot read file", "Done: 6 frames rendered."]
