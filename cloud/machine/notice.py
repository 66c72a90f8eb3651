"""The job's end told by e-mail with Blender closed: one empty object whose key is the words.

S3 hands EventBridge only an object's key (with its size, ETag and times), never its body or
metadata (S3 User Guide, "EventBridge event message structure"), and the rules Set Up made
(`cloud/aws/job_mail.py`) put that key into the e-mail. So when the job ends, or waits for an
answer to its quote, this machine writes `out/notice/<ending>/<words>` through its presigned POST:
no credentials here, and nothing outside the job's prefix.

What the words hold is chosen so nothing unplanned reaches the artist's inbox: the label the
add-on put in the spec (the file's name, sanitised there and again here), fixed words picked
from the ending, and numbers this machine knows (frames, seconds, dollars). Only S3's unreserved
characters (letters, digits, `.`, `-`, `_`) are used, so the words read the same whether or not
the key is URL-encoded on its way; `_` stands for a space. Standard library only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

ENDINGS = ("done", "failed", "capped", "cancelled", "stopped", "quote")
NOTICE_DIR = "notice/"
MAX_LABEL_CHARS = 60
MAX_WORDS_CHARS = 400  # the key stays far within S3's 1,024 bytes with the job's prefix
FALLBACK_LABEL = "your-scene"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# interrupted.json's reason -> (ending, the words said about it)
STOP_WORDS = {
    "spot": ("stopped", "stopped_because_AWS_took_the_spot_machine_back"),
    "time_cap": ("capped", "stopped_at_its_time_cap"),
    "stopped_after_quote": ("cancelled", "was_stopped_after_the_quote"),
    "no_answer_to_quote": ("stopped", "stopped_because_nobody_answered_the_quote"),
}


def safe_label(text: str) -> str:
    """The file's name as the e-mail may say it: ASCII letters, digits, `.`, `-`, `_`; at most
    60 characters; something readable when nothing of it is left."""
    label = _UNSAFE.sub("-", str(text)).strip("-._")[:MAX_LABEL_CHARS].strip("-._")
    return label or FALLBACK_LABEL


def dollars(amount: float) -> str:
    """3.4 -> "3.40" (never negative, never a float's tail)."""
    return f"{max(0.0, float(amount)):.2f}"


def notice_key(prefix: str, ending: str, words: str) -> str:
    """Where a notice lies: `jobs/<id>/out/notice/<ending>/<words>` (prefix: the job's out/)."""
    if ending not in ENDINGS:
        raise ValueError(f"unknown ending {ending!r}")
    return f"{prefix}{NOTICE_DIR}{ending}/{words}"


def words_for(ending: str, label: str, facts: dict[str, Any]) -> str:
    """The sentence of one ending, `_` for spaces (see the module docstring)."""
    label = safe_label(label)
    done, total = int(facts.get("done", 0)), int(facts.get("total", 0))
    frames = f"{done}_of_{total}_frames"
    usd = f"about_{dollars(facts.get('usd', 0.0))}_USD"
    if ending == "done":
        text = f"{label}_is_done_{frames}_{usd}_frames_kept_{int(facts.get('keep_days', 0))}_days"
    elif ending == "failed":
        kind = safe_label(str(facts.get("kind", "")) or "unknown").replace("-", "_")
        text = f"{label}_failed_{kind}_{frames}_done_{usd}"
    elif ending == "quote":
        seconds = facts.get("seconds_per_frame")
        pace = f"{float(seconds):.1f}_s_per_frame" if seconds is not None else "pace_unknown"
        left = int(facts.get("left", 0))
        more = dollars(facts.get("usd_rest", 0.0))
        text = f"{label}_waits_for_your_answer_{pace}_{left}_frames_left_about_{more}_USD_more"
    else:
        said = str(facts.get("said", "")) or ending
        text = f"{label}_{said}_{frames}_done_{usd}"
    return _UNSAFE.sub("-", text)[:MAX_WORDS_CHARS]


class Notice:
    """Sends this job's notices through its POST; a job without `notice` in its spec sends none.

    `put` writes one object under the job's out/ prefix (the supervisor's poster), `say` logs.
    A notice that cannot be written costs the e-mail and one log line, never the job.
    """

    def __init__(
        self,
        spec: dict[str, Any],
        put: Callable[[str, bytes], None],
        say: Callable[[str], None],
        machines: int = 1,
    ) -> None:
        self.settings = spec.get("notice") or {}
        self.total = len(spec.get("frames") or [])
        self.put = put
        self.say = say
        self.machines = max(1, machines)
        self.started = time.monotonic()

    def usd_so_far(self) -> float:
        """What the job's machines cost since this one started, as the spec's price says."""
        hours = (time.monotonic() - self.started) / 3600.0
        return hours * float(self.settings.get("usd_per_hour", 0.0)) * self.machines

    def send(self, ending: str, **facts: Any) -> str:
        """Write the notice of `ending`; returns its key relative to out/ ("" when none is sent)."""
        if not self.settings:
            return ""
        facts = {"total": self.total, "usd": self.usd_so_far(), **facts}
        facts.setdefault("keep_days", int(self.settings.get("keep_days", 0)))
        words = words_for(ending, str(self.settings.get("label", "")), facts)
        relative = notice_key("", ending, words)
        try:
            self.put(relative, b"")
        except Exception as exc:  # the e-mail is a courtesy; the job's own documents are written
            self.say(f"could not write the e-mail notice {relative}: {exc}")
            return ""
        self.say(f"e-mail notice written: {relative}")
        return relative
