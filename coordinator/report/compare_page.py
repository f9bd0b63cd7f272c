"""A comparison of two runs (report/compare.py) as a terminal table and as an HTML page."""
from __future__ import annotations

import math

from rich.table import Table

from hpcbench.coordinator.report.compare import CONFIDENCE, Comparison, Difference
from hpcbench.coordinator.report.exports import NOT_MEASURED
from hpcbench.coordinator.report.markup import cell, e, page, table

HEADERS = ["point", "metric", "unit", "A", "B", "B - A", "change", f"{CONFIDENCE:.0%} CI of B - A",
           "reps A/B", "verdict for B"]
METHOD = ("Each value is the mean over a sweep point's repetitions. The interval is Welch's t "
          f"interval ({CONFIDENCE:.0%}) of the difference of means; it needs at least two "
          "repetitions in each run (recipe `repetitions:`). 'better'/'worse' only when the "
          "interval excludes zero.")


def rows(comparison: Comparison) -> list[list[str]]:
    return [_row(difference) for difference in comparison.differences]


def _row(difference: Difference) -> list[str]:
    interval = difference.interval
    relative = difference.relative
    # a run without values for a metric: energy without GPU telemetry
    mean_a = cell(difference.mean_a) if difference.a else NOT_MEASURED
    mean_b = cell(difference.mean_b) if difference.b else NOT_MEASURED
    return [difference.point, difference.metric, difference.unit, mean_a, mean_b,
            _signed(difference.delta),
            "-" if relative is None else f"{relative:+.1%}",
            "n/a (needs 2+ repetitions)" if interval is None
            else f"[{_signed(interval[0])}, {_signed(interval[1])}]",
            f"{len(difference.a)}/{len(difference.b)}", difference.verdict]


def _signed(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:+,.3f}" if abs(value) < 1000 else f"{value:+,.1f}"


def _title(comparison: Comparison) -> str:
    a, b = comparison.run_a, comparison.run_b
    return f"A = {a.scenario}/{a.session_id}  vs  B = {b.scenario}/{b.session_id}"


def _unmatched(comparison: Comparison) -> list[str]:
    notes = []
    if comparison.only_a:
        notes.append(f"only in A (not compared): {', '.join(comparison.only_a)}")
    if comparison.only_b:
        notes.append(f"only in B (not compared): {', '.join(comparison.only_b)}")
    if not comparison.differences:
        notes.append("no sweep point is in both runs: nothing to compare")
    return notes


def _attempts(comparison: Comparison) -> list[str]:
    """Trials measured more than once: only their final attempts are compared."""
    return [f"{name}: {note}" for name, run in (("A", comparison.run_a), ("B", comparison.run_b))
            for note in run.attempt_notes()]


def terminal_table(comparison: Comparison) -> Table:
    body = rows(comparison)
    view = Table(title=_title(comparison),
                 caption="\n".join([*_unmatched(comparison), *_attempts(comparison), METHOD]))
    for header in HEADERS:
        view.add_column(header, justify="left" if header in ("point", "metric", "unit",
                                                             "verdict for B") else "right")
    for row in body:
        view.add_row(*row)
    return view


def comparison_html(comparison: Comparison) -> str:
    notes = "".join(f"<p class=\"bad\">{e(note)}</p>\n" for note in _unmatched(comparison))
    notes += "".join(f"<p>{e(note)}</p>\n" for note in _attempts(comparison))
    body = (f"<p>{e(_title(comparison))}</p>\n{notes}<p class=\"note\">{e(METHOD)}</p>\n"
            + table(HEADERS, rows(comparison), text_columns=3))
    return page("hpcbench compare", [body])
