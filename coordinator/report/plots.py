"""The report's figures: matplotlib (Agg, no display), each returned as PNG bytes.

Readable at a glance: every figure has a title, axis labels with units and a legend. Output is
deterministic (no Software/date metadata, fixed size and dpi), so the same run always gives the
same bytes and a rebuilt report equals the first one.
"""
from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import ScalarFormatter

from hpcbench.coordinator.report.requests import LATENCIES
from hpcbench.coordinator.report.sweep import Sweep
from hpcbench.coordinator.report.timeline import TIMELINE_PERCENTILES, Timeline

DPI = 100
WIDTH_IN = 11.0
CDF_POINTS = 2000  # a CDF line has at most this many steps
TITLES = {"ttft": "TTFT (time to first token)", "itl": "ITL (inter-token latency)",
          "tpot": "TPOT (time per output token)", "e2e": "E2E (end-to-end latency)"}
OUTCOME_COLOURS = {"ok": "#2ca02c"}


LEGEND_COLUMNS = 3
LEGEND_ROW_IN = 0.2


def _figure(rows: int, columns: int, height_in: float, twin_axes: bool = False,
            legend_entries: int = 0) -> tuple[Figure, np.ndarray]:
    """A figure with a fixed layout (constrained layout costs three times the drawing time);
    `legend_entries` reserves room below the panels for a figure legend (`_figure_legend`)."""
    legend_in = _legend_rows(legend_entries) * LEGEND_ROW_IN + (0.2 if legend_entries else 0)
    height_in += legend_in
    figure = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI)
    axes = figure.subplots(rows, columns, squeeze=False)
    header_in, footer_in = 0.75, 0.6  # suptitle + first title; x labels of the last row
    figure.subplots_adjust(left=0.075, right=0.94 if twin_axes else 0.985,
                           top=1 - header_in / height_in,
                           bottom=(footer_in + legend_in) / height_in,
                           wspace=0.35 if twin_axes else 0.2,
                           hspace=0.9 / max((height_in - legend_in) / rows - 0.9, 0.5))
    return figure, axes


def _legend_rows(entries: int) -> int:
    return -(-entries // LEGEND_COLUMNS)


def _figure_legend(figure: Figure, handles: list, labels: list[str], title: str) -> None:
    """One legend for every panel, below them (it never hides a line, however many trials)."""
    figure.legend(handles, labels, loc="lower center", ncols=LEGEND_COLUMNS, fontsize="small",
                  title=title, title_fontsize="small", frameon=False,
                  bbox_to_anchor=(0.5, 0.0))


def _colours(count: int) -> list:
    """Distinct colours for `count` lines: the default cycle up to 10, then tab20, then a ramp."""
    if count <= 10:
        return [f"C{index}" for index in range(count)]
    cmap = colormaps["tab20" if count <= 20 else "viridis"]
    return [cmap(index / max(count - 1, 1)) if count > 20 else cmap(index)
            for index in range(count)]


def _png(figure: Figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def _empty(axis, text: str) -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center", transform=axis.transAxes,
              color="#666666")


def empirical_cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step points of the empirical CDF, starting at (min, 0): every sample up to CDF_POINTS,
    beyond that evenly spaced ranks (the maximum always included)."""
    ordered = np.sort(values)
    ranks = np.arange(len(ordered))
    if len(ordered) > CDF_POINTS:
        ranks = np.unique(np.linspace(0, len(ordered) - 1, CDF_POINTS).astype(np.int64))
    points = np.concatenate(([ordered[0]], ordered[ranks]))
    return points, np.concatenate(([0.0], (ranks + 1) / len(ordered)))


def latency_cdfs(latencies: dict[str, dict[str, np.ndarray]]) -> bytes:
    """latencies: trial id -> metric -> values (ns). One panel per metric, one line per trial."""
    trials = [trial_id for trial_id, values in latencies.items()
              if any(len(samples) for samples in values.values())]
    colours = dict(zip(trials, _colours(len(trials))))
    figure, axes = _figure(2, 2, 7.5, legend_entries=len(trials))
    figure.suptitle("Latency CDFs (measured requests, from raw samples)")
    for axis, metric in zip(axes.flat, LATENCIES):
        drawn = False
        present = [values[metric] for values in latencies.values() if len(values[metric])]
        low = min((samples.min() for samples in present), default=0)
        high = max((samples.max() for samples in present), default=0)
        spans_decades = low > 0 and high / low > 10  # log scale only where it helps reading
        for trial_id, values in latencies.items():
            samples = values[metric]
            if not len(samples):
                continue
            points, fractions = empirical_cdf(samples)
            axis.plot(points / 1e6, fractions, drawstyle="steps-post", label=trial_id,
                      linewidth=1.4, color=colours[trial_id])
            drawn = True
        axis.set_title(TITLES[metric])
        axis.set_xlabel("latency (ms)")
        axis.set_ylabel("fraction of samples")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
        if drawn:
            if spans_decades:
                axis.set_xscale("log")
                axis.xaxis.set_major_formatter(ScalarFormatter())
        else:
            _empty(axis, "no samples")
    if trials:
        _figure_legend(figure, [Line2D([], [], color=colours[trial_id]) for trial_id in trials],
                       trials, "trial")
    return _png(figure)


def trial_over_time(trial_id: str, timeline: Timeline) -> bytes:
    """Latency percentiles per 1 s bin (2 x 2 panels) above requests per bin by outcome."""
    figure = Figure(figsize=(WIDTH_IN, 9.0), dpi=DPI)
    grid = figure.add_gridspec(3, 2, left=0.075, right=0.985, top=0.915, bottom=0.06,
                               wspace=0.2, hspace=0.55)
    figure.suptitle(f"{trial_id} over time (1 s bins by request end, measured window)")
    for position, metric in enumerate(LATENCIES):
        axis = figure.add_subplot(grid[position // 2, position % 2])
        series = timeline.percentiles[metric]
        drawn = False
        for p in TIMELINE_PERCENTILES:
            if np.isfinite(series[p]).any():
                axis.plot(timeline.starts_s + timeline.bin_s / 2, series[p], marker="o",
                          markersize=3, label=f"p{p:g}")
                drawn = True
        axis.set_title(f"{TITLES[metric]} percentiles")
        axis.set_xlabel("time since measured start (s)")
        axis.set_ylabel("latency (ms)")
        axis.grid(alpha=0.3)
        if drawn:
            axis.legend(fontsize="small")
        else:
            _empty(axis, "no samples")
    axis = figure.add_subplot(grid[2, :])
    errors = sum(int(counts.sum()) for name, counts in timeline.outcomes.items() if name != "ok")
    bottom = np.zeros(len(timeline.starts_s))
    for name, counts in timeline.outcomes.items():
        axis.bar(timeline.starts_s, counts, width=0.9 * timeline.bin_s, align="edge",
                 bottom=bottom, label=name,
                 color=OUTCOME_COLOURS.get(name))
        bottom += counts
    axis.set_title(f"Requests by outcome ({errors} error{'s' if errors != 1 else ''})")
    axis.set_xlabel("time since measured start (s)")
    axis.set_ylabel(f"requests per {timeline.bin_s:g} s bin")
    axis.grid(alpha=0.3, axis="y")
    axis.legend(fontsize="small", title="outcome")
    return _png(figure)


def sweep_plot(result: Sweep) -> bytes:
    """Throughput (tokens/s solid, requests/s dashed on the right axis) and p99 latency (E2E
    solid, TTFT dashed) against the swept parameter; one colour per series; saturation marked."""
    colours = _colours(len(result.series))
    figure, axes = _figure(1, 2, 4.2, twin_axes=True, legend_entries=len(result.series))
    throughput, latency = axes[0]
    requests = throughput.twinx()
    figure.suptitle(f"Sweep over {result.parameter} (saturation point marked)")
    saturated = False
    for series, colour in zip(result.series, colours):
        x = [point.value for point in series.points]
        throughput.plot(x, [point.output_tokens_per_s for point in series.points], marker="o",
                        color=colour)
        requests.plot(x, [point.req_per_s for point in series.points], marker="^",
                      linestyle="--", color=colour, alpha=0.7)
        latency.plot(x, [point.e2e_p99_ms for point in series.points], marker="o",
                     color=colour)
        latency.plot(x, [point.ttft_p99_ms for point in series.points], marker="s",
                     linestyle="--", color=colour, alpha=0.7)
        if series.saturation is not None:
            saturated = True
            point = series.saturation
            for axis in (throughput, latency):
                axis.axvline(point.value, color=colour, linestyle=":", linewidth=1.5)
            throughput.plot([point.value], [point.output_tokens_per_s], marker="X",
                            markersize=13, color="#d62728", linestyle="none")
    throughput.set_title("Throughput")
    throughput.set_ylabel("output tokens per second")
    requests.set_ylabel("requests per second")
    latency.set_title("Latency (p99)")
    latency.set_ylabel("latency (ms)")
    for axis in (throughput, latency):
        axis.set_xlabel(result.parameter)
        axis.grid(alpha=0.3)
    key = [Line2D([], [], color="#444444", marker="o", label="output tokens/s (left)"),
           Line2D([], [], color="#444444", marker="^", linestyle="--",
                  label="requests/s (right)")]
    if saturated:
        key.append(Line2D([], [], color="#d62728", marker="X", markersize=10, linestyle="none",
                          label="saturation point"))
    throughput.legend(handles=key, fontsize="small", loc="upper left")
    latency.legend(handles=[
        Line2D([], [], color="#444444", marker="o", label="E2E p99"),
        Line2D([], [], color="#444444", marker="s", linestyle="--", label="TTFT p99")],
        fontsize="small", loc="upper left")
    _figure_legend(figure, [Line2D([], [], color=colour, linewidth=3) for colour in colours],
                   [series.label or "all trials" for series in result.series], "series")
    return _png(figure)


def goodput_plot(rows: list[tuple[str, float | None, float | None]]) -> bytes:
    """rows: (trial id, throughput req/s, goodput req/s)."""
    figure, axes = _figure(1, 1, 3.4)
    axis = axes[0, 0]
    positions = np.arange(len(rows))
    axis.bar(positions - 0.2, [row[1] or 0 for row in rows], width=0.4, label="throughput")
    axis.bar(positions + 0.2, [row[2] or 0 for row in rows], width=0.4,
             label="goodput (all SLOs met)")
    axis.set_xticks(positions, [row[0] for row in rows], rotation=20, ha="right",
                    fontsize="small")
    axis.set_title("Goodput against the recipe's SLOs")
    axis.set_ylabel("requests per second")
    axis.grid(alpha=0.3, axis="y")
    axis.legend(fontsize="small")
    return _png(figure)


def turn_ttft_plot(series: dict[str, list[tuple[int, float | None, float | None]]]) -> bytes:
    """series: trial id -> (turn index, TTFT p50 ms, TTFT p99 ms) per turn."""
    figure, axes = _figure(1, 1, 3.4)
    axis = axes[0, 0]
    for colour, (trial_id, points) in zip(_colours(len(series)), series.items()):
        turns = [turn for turn, _, _ in points]
        axis.plot(turns, [p50 if p50 is not None else np.nan for _, p50, _ in points],
                  marker="o", color=colour, label=f"{trial_id} p50")
        axis.plot(turns, [p99 if p99 is not None else np.nan for _, _, p99 in points],
                  marker="o", linestyle="--", color=colour, label=f"{trial_id} p99")
    axis.set_title("TTFT by turn index (the history grows each turn)")
    axis.set_xlabel("turn")
    axis.set_ylabel("TTFT (ms)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    return _png(figure)


# telemetry panels: (title, y label, column filter)
_TELEMETRY_PANELS = (
    ("CPU utilisation", "percent", lambda name: name == "cpu_percent"),
    ("GPU utilisation", "percent", lambda name: name.startswith("gpu") and name.endswith("_util")),
    ("Memory used", "MiB", lambda name: name == "ram_used_MB" or name.endswith("_mem_used")),
    ("Power", "watts", lambda name: "power" in name),
)


def telemetry_plot(node: str, seconds: np.ndarray, columns: dict[str, np.ndarray],
                   windows: list[tuple[str, float, float]]) -> bytes:
    """One node's telemetry; `windows`: (trial id, start s, end s) shaded for orientation."""
    figure, axes = _figure(2, 2, 6.0)
    figure.suptitle(f"Telemetry over time: node {node}")
    for axis, (title, unit, wanted) in zip(axes.flat, _TELEMETRY_PANELS):
        names = [name for name in columns if wanted(name)]
        for index, (_trial_id, start, end) in enumerate(windows):
            axis.axvspan(start, end, color="#1f77b4" if index % 2 else "#ff7f0e", alpha=0.08)
        for name in names:
            axis.plot(seconds, columns[name], label=name, linewidth=1.2)
        axis.set_title(title)
        axis.set_xlabel("time since run start (s)")
        axis.set_ylabel(unit)
        axis.grid(alpha=0.3)
        if names:
            axis.legend(fontsize="small")
        else:
            _empty(axis, "not measured on this node")
    return _png(figure)


def ttft_split_plot(rows: list[tuple[str, float, float, float]]) -> bytes:
    """rows: (trial id, dispatch lag, server TTFT, rest), mean ms: one stacked bar per trial
    (a negative rest is drawn back over the server's part)."""
    figure, axes = _figure(1, 1, max(2.6, 1.6 + 0.35 * len(rows)), legend_entries=3)
    longest = max((len(row[0]) for row in rows), default=0)   # room for the trial names
    figure.subplots_adjust(left=min(0.45, max(0.075, (0.2 + 0.075 * longest) / WIDTH_IN)))
    axis = axes[0, 0]
    positions = np.arange(len(rows))[::-1]
    dispatch = np.array([row[1] for row in rows])
    server = np.array([row[2] for row in rows])
    rest = np.array([row[3] for row in rows])
    parts = ((dispatch, np.zeros(len(rows)), "dispatch lag (client)", "#ff7f0e"),
             (server, dispatch, "server's own TTFT", "#1f77b4"),
             (rest, dispatch + server, "rest: network, front end, way back", "#7f7f7f"))
    for widths, left, label, colour in parts:
        axis.barh(positions, widths, left=left, height=0.6, label=label, color=colour)
    axis.set_yticks(positions, [row[0] for row in rows], fontsize="small")
    axis.set_xlabel("mean TTFT (ms)")
    axis.grid(alpha=0.3, axis="x")
    figure.suptitle("Where the client's TTFT goes (means)")
    _figure_legend(figure, [Line2D([], [], color=colour, linewidth=6)
                            for _, _, _, colour in parts],
                   [label for _, _, label, _ in parts], "part")
    return _png(figure)


def server_over_time(trial_id: str, series: list, window: tuple[float, float],
                     gauges: dict[str, str], ttft: str, generated: str) -> bytes:
    """The server's state per scrape (one line per node, `series`: report/server.py
    ServerSeries): KV-cache usage, requests running and waiting, its mean TTFT between
    scrapes and generated tokens per second; the measured window shaded."""
    figure, axes = _figure(2, 2, 6.0)
    figure.suptitle(f"{trial_id}: the server's own view per scrape (measured window shaded)")
    several = len(series) > 1
    panels = (
        ("KV-cache usage", "percent",
         [(item, item.seconds, item.get(gauges["kv_cache_usage_ratio"]) * 100, "")
          for item in series]),
        ("Requests in the server", "requests",
         [(item, item.seconds, item.get(gauges[name]), label) for item in series
          for name, label in (("requests_running", "running"), ("requests_waiting", "waiting"))]),
        ("Server's mean TTFT between scrapes", "ms",
         [(item, item.seconds[1:], item.per_interval(f"{ttft}_sum", f"{ttft}_count") * 1e3, "")
          for item in series]),
        ("Generated tokens", "tokens per second",
         [(item, item.seconds[1:], item.per_interval(generated), "") for item in series]),
    )
    for axis, (title, unit, lines) in zip(axes.flat, panels):
        axis.axvspan(*window, color="#1f77b4", alpha=0.08)
        drawn = False
        for item, x, y, label in lines:
            if len(y) and np.isfinite(y).any():
                name = " ".join(filter(None, (item.node if several else "", label)))
                axis.plot(x, y, marker="o", markersize=3, linewidth=1.2, label=name or None,
                          linestyle="--" if label == "waiting" else "-")
                drawn = True
        axis.set_title(title)
        axis.set_xlabel("time since measured start (s)")
        axis.set_ylabel(unit)
        axis.grid(alpha=0.3)
        if not drawn:
            _empty(axis, "not exported by this server")
        elif any(label for _, _, _, label in lines) or several:
            axis.legend(fontsize="small")
    return _png(figure)


def search_plot(probes: list[dict], capacity: float | None, lowest_missing: float | None,
                axis_name: str) -> bytes:
    """A capacity search's path: each probe's load in the order run, green where the load met
    the SLOs, red where it missed, hollow where the verdict was close; the bracket shaded."""
    figure, axes = _figure(1, 1, 3.4)
    axis = axes[0, 0]
    for colour, meets in (("#2ca02c", True), ("#d62728", False)):
        for close in (False, True):
            points = [(number, probe["load"]) for number, probe in enumerate(probes, 1)
                      if probe["meets"] == meets and probe["close"] == close]
            if points:
                numbers, loads = zip(*points)
                axis.scatter(numbers, loads, s=60, zorder=3, edgecolors=colour,
                             facecolors="none" if close else colour,
                             label=f"{'meets' if meets else 'misses'}"
                                   f"{' (close)' if close else ''}")
    axis.plot(range(1, len(probes) + 1), [probe["load"] for probe in probes], color="#999",
              linewidth=1, zorder=2)
    if capacity is not None and lowest_missing is not None:
        axis.axhspan(capacity, lowest_missing, color="#1f77b4", alpha=0.15,
                     label="bracket holding the capacity")
    axis.set_title("Capacity search: load probed, in order")
    axis.set_xlabel("probe")
    axis.set_ylabel(axis_name)
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    return _png(figure)
