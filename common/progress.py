"""Progress of long work as log lines with an ETA: `WHAT: 120/400 shards (30%), 1m05s, eta 2m32s`.

Used for the work a user waits on (tokenizing a corpus, converting and calibrating exports); the
training loop logs its own lines (`trainers.loop.Progress`) with the same `eta` from `format_eta`.
A line is logged at most every `every` seconds, and always at the end.
"""

from __future__ import annotations

import math
import re
import time

from absl import logging

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(h|m|s)", re.IGNORECASE)
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in "90s", "5m", "2h", "1h30m" or a plain number of seconds; "" (or "0", "none") -> 0.

    A bad value raises ValueError with a sentence a user can act on."""
    cleaned = text.strip().lower()
    if cleaned in ("", "0", "none", "off"):
        return 0.0
    try:
        seconds = float(cleaned)
    except ValueError:
        parts = _DURATION.findall(cleaned)
        if not parts or _DURATION.sub("", cleaned).strip():
            raise ValueError(f"{text!r} is not a duration; write e.g. 90s, 5m, 2h or 1h30m") from None
        seconds = sum(float(number) * _SECONDS[unit] for number, unit in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{text!r} is not a duration >= 0; write e.g. 90s, 5m, 2h or 1h30m")
    return seconds


def format_seconds(seconds: float) -> str:
    """73.4 -> "1m13s"; 3725 -> "1h02m"; under a minute: "12.3s"."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_eta(done: float, total: float, elapsed: float) -> str:
    """The remaining time if the rate so far holds: "eta 2m32s" ("eta ?" before anything is done)."""
    if done <= 0 or elapsed <= 0:
        return "eta ?"
    return f"eta {format_seconds(max(total - done, 0) * elapsed / done)}"


class Progress:
    """`update(done)` logs `WHAT: done/total UNIT (pct), elapsed, eta` now and then."""

    def __init__(self, what: str, total: int, unit: str = "", every: float = 10.0):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.start = self.last = time.perf_counter()

    def update(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not (force or done >= self.total or now - self.last >= self.every):
            return
        self.last = now
        elapsed = now - self.start
        share = f" ({100.0 * done / self.total:.0f}%)" if self.total else ""
        unit = f" {self.unit}" if self.unit else ""
        tail = "done" if done >= self.total else format_eta(done, self.total, elapsed)
        logging.info("%s: %d/%d%s%s, %s, %s", self.what, done, self.total, unit, share, format_seconds(elapsed), tail)
