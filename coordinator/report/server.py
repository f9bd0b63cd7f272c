"""report.html's section "The server's own view": what the server measured of each trial,
beside what the client measured.

Read from each trial's summary.json (`server`, coordinator/session/server_view.py) and its
server_metrics.csv (every scrape over the window). Client figures are the exact ones of
summary.json (`exact`, from the raw samples, as the Latency section's); the server's come from
its own histograms: exact means, percentiles estimated inside a bucket, shown with that bucket.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hpcbench.coordinator.report import plots
from hpcbench.coordinator.report.markup import cell, e, image, table
from hpcbench.coordinator.report.rundata import RunData, TrialData

SIDE_BY_SIDE = (("ttft", "TTFT"), ("itl", "ITL"), ("tpot", "TPOT"), ("e2e", "E2E"))
SERVER_ONLY = (("queue_time", "queue time (waiting for a batch slot)"),
               ("prefill_time", "prefill time"), ("decode_time", "decode time"))
PERCENTILES = ("p50", "p90", "p99")
TTFT_HISTOGRAM = "hpcbench_server_time_to_first_token_seconds"
GAUGES = {"kv_cache_usage_ratio": "hpcbench_server_kv_cache_usage_ratio",
          "requests_running": "hpcbench_server_requests_running",
          "requests_waiting": "hpcbench_server_requests_waiting"}
GENERATED = "hpcbench_server_generation_tokens_total"
EXPORTERS = ("vLLM, the simulator and llama.cpp's llama-server export /metrics; "
             "llama-cpp-python's server (the llamacpp service's default) and Ollama do not")


@dataclass
class ServerSeries:
    """One node's scrapes of a trial: seconds from the trial's time zero, value per metric
    (NaN where a scrape lacks it)."""

    node: str
    seconds: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        return self.values.get(name, np.full(len(self.seconds), np.nan))

    def per_interval(self, numerator: str, denominator: str | None = None) -> np.ndarray:
        """Between consecutive scrapes: the increase of `numerator` divided by that of
        `denominator` (or by the seconds between them); NaN where nothing was counted or a
        counter went back (a restart)."""
        top = np.diff(self.get(numerator))
        bottom = np.diff(self.get(denominator)) if denominator else np.diff(self.seconds)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = top / bottom
        return np.where((bottom > 0) & (top >= 0), ratio, np.nan)


def server_series(rows: list[tuple[int, str, str, str, float]],
                  zero_ns: int) -> list[ServerSeries]:
    """The plain (not bucket) values of server_metrics.csv rows, one series per node."""
    by_node: dict[str, dict[int, dict[str, float]]] = {}
    for ts_ns, node, metric, le, value in rows:
        if not le:
            by_node.setdefault(node, {}).setdefault(ts_ns, {})[metric] = value
    result = []
    for node, scrapes in sorted(by_node.items()):
        times = sorted(scrapes)
        names = sorted({name for values in scrapes.values() for name in values})
        result.append(ServerSeries(
            node, (np.array(times, dtype=np.int64) - zero_ns) / 1e9,
            {name: np.array([scrapes[t].get(name, np.nan) for t in times]) for name in names}))
    return result


def section(run: RunData) -> str:
    parts = ["<h2 id=\"server\">The server's own view</h2>"]
    measured = [trial for trial in run.trials if trial.summary.get("server")]
    if not measured:
        service = (run.recipe.get("workload") or {}).get("service", "unknown")
        parts.append(f"<p>Not measured: no monitor scraped the server's Prometheus /metrics "
                     f"during a trial (service {e(service)}; {e(EXPORTERS)}; "
                     "monitoring must be enabled).</p>")
        return "\n".join(parts)
    interval = (run.recipe.get("monitoring") or {}).get("interval")
    parts.append(
        "<p class=\"note\">What the server itself measured, from its /metrics as the monitor "
        f"scraped it{f' every {interval:g} s' if interval else ''}: counters and histograms "
        "over the span from the last scrape before each trial's measured window to the first "
        "after it (so the server may count a few requests more than the client), gauges over "
        "the scrapes inside the window. The server's means are exact; of a percentile its "
        "histogram only knows the bucket: \"≈ V in (L, U]\" is an estimate inside that bucket "
        "(linear, as PromQL's histogram_quantile), \"≤ U\" a percentile in the lowest bucket, "
        "\"> L\" one above the highest bound. The client's figures are the exact ones of the "
        "Latency section. All latencies in ms.</p>")
    parts.append(_side_by_side(measured))
    parts.append(_ttft_split(measured))
    parts.append(_state(measured))
    missing = [trial.trial_id for trial in run.trials if not trial.summary.get("server")]
    if missing:
        parts.append(f"<p class=\"note\">Without a scrape of the server: "
                     f"{e(', '.join(missing))}.</p>")
    for trial in measured:
        plot = _over_time(trial)
        if plot:
            parts.append(plot)
    return "\n".join(part for part in parts if part)


def _server_percentile(figures: dict, key: str) -> str:
    """A server percentile as its histogram knows it: "≤ U" in the lowest bucket (an
    interpolation from 0 would be made up), "> L" in the +Inf one, else "≈ V in (L, U]"."""
    value = figures.get(f"{key}_ms")
    bucket = figures.get(f"{key}_bucket_ms")
    if value is None:
        return "-"
    if not bucket:
        return f"≈ {cell(float(value))}"
    lower, upper = bucket
    if upper is None:
        return f"> {lower:g}"
    if lower is None or lower <= 0:
        return f"≤ {upper:g}"
    return f"≈ {cell(float(value))} in ({lower:g}, {upper:g}]"


def _side_by_side(trials: list[TrialData]) -> str:
    rows = []
    for trial in trials:
        histograms = trial.summary["server"]["histograms"]
        exact = trial.summary.get("exact") or {}
        for metric, label in SIDE_BY_SIDE:
            client = exact.get(metric)
            if client is not None:
                rows.append([trial.trial_id, label, "client", client["count"], client["mean"],
                             *(client[key] for key in PERCENTILES)])
            server = histograms.get(metric)
            if server is not None:
                rows.append([trial.trial_id, label, "server", _count(server["count"]),
                             server["mean_ms"],
                             *(_server_percentile(server, key) for key in PERCENTILES)])
        for metric, label in SERVER_ONLY:
            server = histograms.get(metric)
            if server is not None:
                rows.append([trial.trial_id, label, "server", _count(server["count"]),
                             server["mean_ms"],
                             *(_server_percentile(server, key) for key in PERCENTILES)])
    if not rows:
        return ("<p>The server exports no latency histograms (llama-server has none): only "
                "its counters and gauges are below.</p>")
    return ("<h3>Latency: client and server side by side</h3>\n"
            + table(["trial", "metric", "measured by", "count", "mean", "p50", "p90", "p99"],
                    rows, text_columns=3))


def _count(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _ttft_split(trials: list[TrialData]) -> str:
    splits = [(trial.trial_id, trial.summary["server"].get("ttft_split")) for trial in trials]
    splits = [(trial_id, split) for trial_id, split in splits if split]
    if not splits:
        return ""
    rows = [[trial_id, split["client_requests"], _count(split["server_requests"]),
             split["client_ttft_mean_ms"], split["client_dispatch_mean_ms"],
             split["server_ttft_mean_ms"], split["rest_mean_ms"],
             f"{100 * split['server_share']:.1f}" if split["server_share"] is not None else "-"]
            for trial_id, split in splits]
    bars = [(trial_id, split["client_dispatch_mean_ms"], split["server_ttft_mean_ms"],
             split["rest_mean_ms"]) for trial_id, split in splits]
    return ("<h3>Where the client's TTFT goes</h3>\n"
            "<p class=\"note\">The client's mean TTFT (measured requests with a first token) "
            "= its dispatch lag (before the request left the client; 0 in closed loop, whose "
            "TTFT starts at the send) + the server's own mean TTFT (vLLM: from the request's "
            "arrival in its engine to its first token) + the rest, outside both clocks: the "
            "network both ways, the server's HTTP front end before its clock starts, the way "
            "back to the client. Means add up, percentiles do not. A slightly negative rest "
            "is the two clocks' disagreement, not time.</p>\n"
            + image(plots.ttft_split_plot(bars), "The client's mean TTFT split into dispatch "
                    "lag, server time and the rest")
            + table(["trial", "client requests", "server requests", "client TTFT", "dispatch lag",
                     "server TTFT", "rest", "server share %"], rows))


# (summary key, header, how to read it from the server block)
_STATE_COLUMNS = (
    ("kv", "KV cache mean / max %",
     lambda s: _mean_max(s["gauges"].get("kv_cache_usage_ratio"), 100)),
    ("running", "running mean / max", lambda s: _mean_max(s["gauges"].get("requests_running"))),
    ("waiting", "waiting mean / max", lambda s: _mean_max(s["gauges"].get("requests_waiting"))),
    ("in_server", "in server / queued (Little)",
     lambda s: _little(s["derived"].get("requests_in_server_mean"),
                       s["derived"].get("requests_queued_mean"))),
    ("preemptions", "preemptions", lambda s: _opt_count(s["counters"].get("preemptions"))),
    ("prefix", "prefix cache hits %",
     lambda s: _percent(s["derived"].get("prefix_cache_hit_ratio"))),
    ("busy", "busy slots per decode", lambda s: s.get("busy_slots_per_decode")),
    ("prompt_rate", "prompt tokens/s while busy",
     lambda s: s["derived"].get("prompt_tokens_per_busy_s")),
    ("token_ms", "ms per token per slot",
     lambda s: s["derived"].get("generation_ms_per_token_per_slot")),
)


def _mean_max(gauge: dict | None, scale: float = 1.0) -> str | None:
    if not gauge:
        return None
    return f"{cell(gauge['mean'] * scale)} / {cell(gauge['max'] * scale)}"


def _little(in_server: float | None, queued: float | None) -> str | None:
    if in_server is None:
        return None
    return f"{cell(in_server)} / {cell(queued) if queued is not None else '-'}"


def _percent(ratio: float | None) -> str | None:
    return None if ratio is None else f"{100 * ratio:.1f}"


def _opt_count(value: float | None):
    return None if value is None else _count(value)


def _pair(client, server) -> str:
    """'client / server' counts; '-' for a side that did not count."""
    return f"{cell(client)} / {cell(_opt_count(server)) if server is not None else '-'}"


def _state(trials: list[TrialData]) -> str:
    columns = [(key, header, read) for key, header, read in _STATE_COLUMNS
               if any(read(trial.summary["server"]) is not None for trial in trials)]
    rows = []
    for trial in trials:
        server, overall = trial.summary["server"], trial.summary["overall"]
        counters = server["counters"]
        rows.append([trial.trial_id, f"{server['scrapes_answered']} / {server['scrapes']}",
                     f"{server['span']['seconds']:.2f} / {server['window_s']:.2f}",
                     _pair(overall["requests"], counters.get("requests_finished")),
                     _pair(overall["input_tokens"], counters.get("prompt_tokens")),
                     _pair(overall["output_tokens"], counters.get("generation_tokens")),
                     *(read(server) if read(server) is not None else "-"
                       for _, _, read in columns)])
    return ("<h3>The server's counters and state</h3>\n"
            "<p class=\"note\">Scrapes answered of those in the span; the span against the "
            "measured window (s); requests, prompt (input) and generated (output) tokens as "
            "the client counted them (measured requests; tokens of successful ones) / as the "
            "server counted them over the span. Gauges: mean / max over the scrapes inside "
            "the window; a gauge read once per scrape can miss a server busy in short bursts. "
            "In server / queued (Little): the mean number of requests in the server and in "
            "its queue, from the time its finished requests spent there per second of the "
            "span (Little's law), which sees every request.</p>\n"
            + table(["trial", "scrapes", "span / window s", "requests client / server",
                     "input tokens client / server", "output tokens client / server",
                     *(header for _, header, _ in columns)], rows))


def _over_time(trial: TrialData) -> str:
    rows = trial.server_rows
    start = trial.summary.get("window", {}).get("start_ns")
    end = trial.summary.get("window", {}).get("end_ns")
    if not rows or start is None or end is None:
        return ""
    series = server_series(rows, start)
    return image(plots.server_over_time(trial.trial_id, series, (0.0, (end - start) / 1e9),
                                        GAUGES, TTFT_HISTOGRAM, GENERATED),
                 f"The server's state over time, {trial.trial_id}")
