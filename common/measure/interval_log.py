"""HdrHistogram's interval log, text format 1.3: one encoded histogram per interval.

Each line is `Tag=NAME,start_s,length_s,max_ms,BASE64`, readable by HdrHistogram's
HistogramLogReader and HistogramLogProcessor; the results keep one `.hlog` per trial.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TextIO

from hpcbench.common.measure.buckets import HistogramError
from hpcbench.common.measure.histogram import Histogram


class IntervalLogWriter:
    """HdrHistogram interval log (format 1.3) on an open text file; the caller owns the file."""

    def __init__(self, out: TextIO, start_time_s: float, max_value_unit_ratio: float = 1e6):
        self.out = out
        self.start_time_s = start_time_s
        self.max_value_unit_ratio = max_value_unit_ratio  # ns -> ms for the Interval_Max column
        stamp = datetime.fromtimestamp(start_time_s, tz=timezone.utc).isoformat()
        out.write("#[Histogram log format version 1.3]\n"
                  f"#[StartTime: {start_time_s:.3f} (seconds since epoch), {stamp}]\n"
                  f"#[BaseTime: {start_time_s:.3f} (seconds since epoch)]\n"
                  '"StartTimestamp","Interval_Length","Interval_Max",'
                  '"Interval_Compressed_Histogram"\n')

    def write(self, tag: str, start_time_s: float, length_s: float, histogram: Histogram) -> None:
        """One interval; `start_time_s` is wall-clock seconds, written relative to BaseTime."""
        if not tag or any(char in tag for char in ", \n\t"):
            raise HistogramError(f"log tag {tag!r} must be non-empty without commas or spaces")
        maximum = (histogram.max or 0) / self.max_value_unit_ratio
        relative = max(start_time_s - self.start_time_s, 0.0)
        self.out.write(f"Tag={tag},{relative:.3f},{length_s:.3f},{maximum:.3f},"
                       f"{histogram.encode()}\n")


def read_interval_log(text: str) -> list[tuple[str | None, float, float, Histogram]]:
    """(tag, start_s relative to BaseTime, length_s, histogram) per interval line of a .hlog."""
    intervals = []
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith('"'):
            continue
        tag = None
        if line.startswith("Tag="):
            tag, line = line[4:].split(",", 1)
        fields = line.split(",")
        if len(fields) != 4:
            raise HistogramError(f"interval log line has {len(fields)} fields, expected 4: "
                                 f"{line[:60]!r}")
        intervals.append((tag, float(fields[0]), float(fields[1]), Histogram.decode(fields[3])))
    return intervals
