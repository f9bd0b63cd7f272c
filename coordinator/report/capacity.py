"""A capacity search in words and in report.html: its answer, each probe's checks, its path.

Read from session.json's `search` block (coordinator/session/capacity.py writes it), so the
CLI's final report (which imports no plotting) and report.html say the same thing.
"""
from __future__ import annotations

from hpcbench.coordinator.report.markup import e, image, table

UNITS = {"load.rate": "requests/s", "concurrency": "requests in flight"}


def answer(search: dict) -> str:
    """The capacity with its uncertainty, in one sentence."""
    axis, unit = search["axis"], UNITS[search["axis"]]
    status = search["status"]
    if status == "unfinished":
        text = (f"search unfinished after {len(search['probes'])} probe(s): re-run with the "
                "same --session to continue it")
        if search["capacity"] is not None:
            text += f" (so far {axis} {search['capacity']:g} meets the SLOs)"
        return text
    if status == "below-range":
        return (f"no capacity within the range: even {axis} {search['low']:g} ({unit}) misses "
                "the SLOs; lower search.low")
    if status == "above-range":
        return (f"capacity at least {axis} {search['high']:g} ({unit}): the top of the range "
                "still meets the SLOs; raise search.high")
    if search["lowest_missing"] is None:
        return f"capacity: {axis} {search['capacity']:g} ({unit})"
    return (f"capacity: {axis} {search['capacity']:g} ({unit}), between "
            f"{search['capacity']:g} (meets the SLOs) and {search['lowest_missing']:g} (misses "
            f"them), ± {search['uncertainty']:g} at resolution {search['resolution']:g}")


def slo_text(search: dict) -> str:
    """The search's SLOs and error ceiling: "itl p50 <= 65 ms, errors <= 1%"."""
    parts = [f"{metric} p{slo['percentile']:g} ≤ {slo['max'] * 1e3:g} ms"
             for metric, slo in sorted(search["slo"].items())]
    parts.append(f"error rate ≤ {search['max_error_rate']:.2%}")
    return ", ".join(parts)


def check_text(check: dict) -> str:
    """One check of a probe: "itl p50 60.2 ms [60.1, 60.3] <= 65 ms"."""
    head = f"{check['metric']} p{check['percentile']:g}"
    if check["value_ms"] is None:
        return f"{head}: no samples"
    low, high = check["interval_ms"]
    relation = "≤" if check["meets"] else ">"
    high = "∞" if high is None else f"{high:.3g}"    # too few samples to bound it above
    return (f"{head} {check['value_ms']:.3g} ms [{low:.3g}, {high}] {relation} "
            f"{check['limit_ms']:g} ms{' (close)' if check['close'] else ''}")


def verdict_text(probe: dict) -> str:
    return ("meets" if probe["meets"] else "misses") + (" (close)" if probe["close"] else "")


def probe_rows(search: dict) -> list[list]:
    """Per probe: number, trial, load, run, checks, errors, verdict, why it was chosen."""
    rows = []
    for number, probe in enumerate(search["probes"], 1):
        errors = "-" if probe["error_rate"] is None else (
            f"{probe['error_rate']:.2%}" + ("" if probe["errors_ok"] else " (over ceiling)"))
        rows.append([number, probe["trial_id"], f"{probe['load']:g}", probe["run"],
                     "; ".join(check_text(check) for check in probe["checks"]) or "-",
                     errors, verdict_text(probe), probe["reason"]])
    return rows


PROBE_HEADERS = ["#", "trial", "load", "run", "percentile [confidence interval] vs SLO",
                 "errors", "verdict", "why this probe"]


def section(session: dict | None) -> str:
    """report.html's capacity-search section ("" for a session without a search)."""
    from hpcbench.coordinator.report import plots  # matplotlib: only where a page is drawn

    search = (session or {}).get("search")
    if not search:
        return ""
    parts = ["<h2 id=\"capacity-search\">Capacity search</h2>",
             f"<p><b>{e(answer(search))}</b>.</p>",
             f"<p>SLOs: {e(slo_text(search))}. Range {search['low']:g} to {search['high']:g} "
             f"{e(UNITS[search['axis']])}; resolution {search['resolution']:g}.</p>",
             "<p class=\"note\">Each probe is a trial of its own. A load meets the SLOs when "
             "each percentile (nearest rank over every run of that load pooled) is at or below "
             "its limit and the error rate at or below the ceiling. The interval is the "
             f"{search['confidence']:.0%} order-statistic confidence interval of the percentile; "
             "a limit inside it makes the verdict close, and a bracket end with a close verdict runs "
             f"again (up to {search['max_repeats']} more times). Bracketing doubles the load from "
             "search.low until it misses; bisection then halves the bracket until it is no "
             "wider than the resolution (docs/capacity-search.md).</p>"]
    if search["notes"]:
        parts.append("<ul>" + "".join(f"<li class=\"bad\">{e(note)}</li>"
                                      for note in search["notes"]) + "</ul>")
    if search["probes"]:
        parts.append(image(plots.search_plot(search["probes"], search["capacity"],
                                             search["lowest_missing"], search["axis"]),
                           "The loads the capacity search probed, in order"))
    parts.append(table(PROBE_HEADERS, probe_rows(search), text_columns=2))
    return "\n".join(parts)
