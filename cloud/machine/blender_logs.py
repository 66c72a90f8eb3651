"""Blender's render output turned into progress events, for the worker and the add-on.

Blender 4.x prints one stats line per update ("Fra:12 Mem:... | Time:00:01.20 | ... |
Sample 32/128"); Blender 5.x prefixes every line with a timestamp and a log category
("00:01.234  render           | Saved: '...'") and its stats carry no "Fra:" unless the worker
script adds it ("Fra: 12 | Mem: 2M | Sample 32/128"). Both sides of the job read the same
lines, so the parsing lives here once.

Our own scripts inside Blender (`render_frames.py`, `prepare_blender.py`, `assemble_movie.py`)
talk to the supervisor between Blender's lines: `MARK` and one JSON object per line (`emit`,
`fail`; read back with `read_event`). Those scripts run by path with no package around them, so
they load this file by path (`runpy.run_path`): it stays standard library only, with nothing of
the package imported.

This module is also shipped to the render machine next to the supervisor: standard library
only, Python 3.9 syntax.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------- our scripts' lines

MARK = "CLOUDRENDER "


def emit(event: str, **data: object) -> None:
    """One event line on stdout, for the supervisor (inside Blender)."""
    print(MARK + json.dumps({"event": event, **data}, sort_keys=True), flush=True)


def fail(kind: str, message: str) -> None:
    """The job's failure, said as an "error" event; Blender then exits with code 3."""
    emit("error", kind=kind, message=message)
    sys.stdout.flush()
    raise SystemExit(3)


def read_event(text: str) -> dict[str, Any] | None:
    """The event of a stripped line one of our scripts printed; None for Blender's own lines.
    ValueError where the line has the mark but no JSON object after it."""
    if not text.startswith(MARK):
        return None
    event = json.loads(text[len(MARK) :])
    if not isinstance(event, dict):
        raise ValueError("an event is a JSON object")
    return event


# ---------------------------------------------------------------- Blender's own lines

# "00:01.234  render           | message" (Blender 5.x); hours appear after an hour of runtime.
_TIMESTAMPED = re.compile(r"^(?:\d+:)?\d\d:\d\d\.\d{3}\s+([\w.]+)\s+\|\s?(.*)$")
_FRAME_4X = re.compile(r"^Fra:\s*(-?\d+)\s")
_FRAME_5X = re.compile(r"^Fra:\s*(-?\d+)\s*\|")
_SAMPLE = re.compile(r"\bSample (\d+)/(\d+)")
_TIME = re.compile(r"\bTime:\s*([\d:.]+)")
_REMAINING = re.compile(r"\bRemaining:\s*([\d:.]+)")
_PEAK = re.compile(r"\(Peak ([\d.]+)M\)|Peak:\s*([\d.]+)M")
_SAVED = re.compile(r"^Saved: '(.*)'\s*$")
_ERROR = re.compile(r"^(?:Error|ERROR|error)\b:?\s*(.*)$")

# Text that names the cause of a failed render, most specific first: (pattern, kind, cause).
_CAUSES = (
    (
        re.compile(r"out of memory|CUDA_ERROR_OUT_OF_MEMORY|System is out of GPU", re.I),
        "gpu_memory",
        "The GPU ran out of memory while rendering.",
    ),
    (
        re.compile(r"Unable to open|Cannot read file|No such file|not found|Can't find", re.I),
        "missing_file",
        "A file the scene needs was missing on the render machine.",
    ),
    (
        re.compile(r"Segmentation fault|Aborted|Killed|Writing: .*crash\.txt", re.I),
        "crash",
        "Blender crashed while rendering.",
    ),
)


def parse_duration(text: str) -> float | None:
    """Blender's "MM:SS.hh" or "HH:MM:SS.hh" as seconds; None when it is not one."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        return None
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


@dataclass
class LogEvent:
    """What one output line says. `kind`: "progress", "saved" or "error"."""

    kind: str
    frame: int | None = None
    sample: int | None = None
    samples: int | None = None
    status: str = ""  # the last "|" part of a stats line: "Sample 3/4", "Finished", "Updating Lights"
    elapsed_s: float | None = None
    remaining_s: float | None = None
    peak_mb: float | None = None
    path: str = ""  # "saved": the file Blender wrote
    message: str = ""  # "error": Blender's text


def strip_prefix(line: str) -> str:
    """The message of a line, without Blender 5.x's timestamp and category."""
    match = _TIMESTAMPED.match(line)
    return match.group(2) if match else line


def _progress(message: str, frame: int | None) -> LogEvent:
    event = LogEvent("progress", frame=frame)
    sample = _SAMPLE.search(message)
    if sample:
        event.sample, event.samples = int(sample.group(1)), int(sample.group(2))
    time_match = _TIME.search(message)
    if time_match:
        event.elapsed_s = parse_duration(time_match.group(1))
    remaining = _REMAINING.search(message)
    if remaining:
        event.remaining_s = parse_duration(remaining.group(1))
    peak = _PEAK.search(message)
    if peak:
        event.peak_mb = float(peak.group(1) or peak.group(2))
    event.status = message.rsplit("|", 1)[-1].strip()
    return event


def parse_line(line: str) -> LogEvent | None:
    """The event one line of Blender output carries, or None for other chatter."""
    message = strip_prefix(line.rstrip("\r\n")).strip()
    saved = _SAVED.match(message)
    if saved:
        return LogEvent("saved", path=saved.group(1))
    frame_match = _FRAME_5X.match(message) or _FRAME_4X.match(message)
    if frame_match:
        return _progress(message, int(frame_match.group(1)))
    if _SAMPLE.search(message) and "|" in message:
        return _progress(message, None)  # a 5.x stats line without the frame number
    error = _ERROR.match(message)
    if error:
        return LogEvent("error", message=error.group(1) or message)
    return None


class ProgressTracker:
    """Feeds lines in order and remembers the frame, for stats lines that do not name it."""

    def __init__(self) -> None:
        self.frame: int | None = None
        self.sample: int | None = None
        self.samples: int | None = None
        self.saved: list[str] = []

    def feed(self, line: str) -> LogEvent | None:
        event = parse_line(line)
        if event is None:
            return None
        if event.kind == "progress":
            if event.frame is None:
                event.frame = self.frame
            elif event.frame != self.frame:
                self.frame, self.sample, self.samples = event.frame, None, None
            if event.sample is not None:
                self.sample, self.samples = event.sample, event.samples
        elif event.kind == "saved":
            self.saved.append(event.path)
        return event


def classify_failure(lines: list[str]) -> tuple[str, str]:
    """A (kind, one-line cause) for a failed render from its last log lines; ("", "") if unknown."""
    for line in reversed(lines):
        message = strip_prefix(line)
        for pattern, kind, cause in _CAUSES:
            if pattern.search(message):
                return kind, cause
    return "", ""
