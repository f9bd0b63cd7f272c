"""report.html: one self-contained page per run (plots embedded as base64 PNG, inline CSS, no
script and no network reference), readable in a minute from top to bottom:

summary -> capacity search (its answer and path, for a session that searched) ->
configuration and environment -> latency (CDFs, percentile tables) -> conversations
(multi-turn runs: per conversation and per turn index) -> the server's
own view (its latencies beside the client's, where the client's TTFT goes, its counters and
state; report/server.py) -> sweep (throughput and latency against the swept parameter,
saturation point) -> goodput against the SLOs -> each trial over time (percentiles, outcomes
by error class) -> telemetry per node.

Deterministic: built only from the run directory (environment.json included), so rebuilding the
report of a run gives the same bytes.
"""
from __future__ import annotations

import yaml

from hpcbench.common.measure.statistics import PERCENTILE_KEYS, exact_stats
from hpcbench.coordinator.report import capacity, conversations, plots, server
from hpcbench.coordinator.report.exports import NOT_MEASURED, summary_rows
from hpcbench.coordinator.report.goodput import slo_attainment
from hpcbench.coordinator.report.markup import e, image, page, percent, table
from hpcbench.coordinator.report.requests import LATENCIES
from hpcbench.coordinator.report.rundata import RunData
from hpcbench.coordinator.report.sweep import SATURATION_GAIN, SATURATION_LATENCY_GROWTH, sweep
from hpcbench.coordinator.report.timeline import timeline


def render_report(run: RunData, environment: dict) -> str:
    """The whole report page as text."""
    sections = [_overview(run), capacity.section(run.session), _configuration(run, environment),
                _latency(run), conversations.section(run), server.section(run), _sweep(run),
                _goodput(run), _over_time(run), _telemetry(run)]
    return page(f"hpcbench report: {run.scenario} / {run.session_id}", sections)


# -- sections ---------------------------------------------------------------------------------
def _overview(run: RunData) -> str:
    session = run.session or {}
    state = session.get("state", "unknown (no session.json)")
    # each trial's verdict as stored with it (trial.done), never judged again here
    passed = {trial.trial_id: trial.passed for trial in run.trials}
    failed = [trial for trial in run.trials if not trial.passed]
    runs = len(session.get("runs") or ()) or (1 if session else 0)
    lines = [f"<p>Session state: <b>{e(state)}</b>"
             + (f" after {runs} runs" if runs > 1 else "")
             + f"; {len(run.trials)} finished trial(s)"
             + (f", elapsed {session['elapsed_s']:.1f} s" if session.get("elapsed_s") else "")
             + ".</p>"]
    if failed:
        lines.append(f"<p class=\"bad\">{len(failed)} trial(s) failed (the recipe's "
                     "error_threshold, lost executors or samples; see below):</p>")
        lines.append("<ul>" + "".join(
            f"<li>{e(trial.trial_id)}: {e('; '.join(trial.outcome.get('problems') or ()))}"
            "</li>" for trial in failed) + "</ul>")
    notes = run.attempt_notes()
    if notes:
        lines.append("<p>Measured more than once (a re-run of the session measures failed and "
                     "cut trials again): every figure is the final attempt's; earlier ones are "
                     "kept in &lt;trial&gt;/attempts/ and in no figure.</p>")
        lines.append("<ul>" + "".join(f"<li>{e(note)}</li>" for note in notes) + "</ul>")
    if session.get("error"):
        lines.append(f"<pre class=\"bad\">{e(session['error'])}</pre>")
    if run.unfinished:
        lines.append(f"<p class=\"bad\">Unfinished trials (no trial.done, not reported): "
                     f"{e(', '.join(run.unfinished))}</p>")
    columns = ("trial", "requests", "ok", "error_total", "req_per_s", "output_tokens_per_s",
               "goodput_req_per_s", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "e2e_p99_ms")
    verdicts = {True: "ok", False: "failed"}
    rows = [[row[key] for key in columns] + _energy_cells(row)
            + [verdicts.get(passed.get(row["trial"]), "-")] for row in summary_rows(run)]
    lines.append(table(["trial", "requests", "ok", "errors", "req/s", "output tokens/s",
                        "goodput req/s", "TTFT p50 (ms)", "TTFT p99 (ms)", "ITL p50 (ms)",
                        "E2E p99 (ms)", "GPU energy (J)", "output tokens/J", "result"], rows))
    lines.append("<p class=\"note\">GPU energy: all GPUs' energy over the trial's measured "
                 "window, from their telemetry (energy counter, else integrated power); "
                 f"\"{NOT_MEASURED}\" when no GPU reported telemetry.</p>")
    lines += _reasoning(run)
    classes = sorted({name for trial in run.trials for name in trial.summary["overall"]["errors"]})
    if classes:
        lines.append("<p>Errors by class (measured requests; over time in each trial's "
                     "section):</p>")
        lines.append(table(["trial", *classes],
                           [[trial.trial_id, *(trial.summary["overall"]["errors"].get(name, 0)
                                               for name in classes)] for trial in run.trials]))
    return "<h2 id=\"summary\">Summary</h2>\n" + "\n".join(lines)


def _reasoning(run: RunData) -> list[str]:
    """Reasoning tokens and the two first-token times, where any trial streamed reasoning."""
    rows = [row for row in summary_rows(run) if row.get("reasoning_tokens")]
    if not rows:
        return []
    return ["<p>Reasoning (docs/metrics.md, \"Reasoning tokens\"): TTFT is the first token of "
            "any kind; TTFR the first reasoning token, TTFA the first answer token.</p>",
            table(["trial", "reasoning tokens", "answer tokens", "TTFR p50 (ms)",
                   "TTFR p99 (ms)", "TTFA p50 (ms)", "TTFA p99 (ms)"],
                  [[row[key] for key in ("trial", "reasoning_tokens", "answer_tokens",
                                         "ttfr_p50_ms", "ttfr_p99_ms", "ttfa_p50_ms",
                                         "ttfa_p99_ms")] for row in rows])]


def _energy_cells(row: dict) -> list:
    """A summary row's energy figures, NOT_MEASURED in their place without GPU telemetry."""
    if row["energy_source"] == NOT_MEASURED:
        return [NOT_MEASURED, NOT_MEASURED]
    return [row["energy_j"], row["output_tokens_per_joule"]]


def _configuration(run: RunData, environment: dict) -> str:
    packages = environment.get("packages", {})
    service = (run.recipe.get("workload") or {}).get("service", "unknown")
    facts = [("scenario", run.scenario), ("session", run.session_id),
             ("nodes", ", ".join(run.nodes) or "none recorded"),
             (f"{service} server version", (run.session or {}).get("server_version")
              or "unknown"),
             ("hpcbench git commit", environment.get("git_commit", "unknown")),
             ("python", environment.get("python", "unknown")),
             ("platform", environment.get("platform", "unknown")),
             ("environment recorded at", environment.get("recorded_at", "unknown")),
             *((f"package {name}", value) for name, value in sorted(packages.items()))]
    integrity = (run.session or {}).get("integrity") or {}
    problems = {key: value for key, value in integrity.items()
                if key.endswith("_batches") and key != "batches" and value}
    recipe = {key: value for key, value in run.recipe.items() if key not in ("trial",
                                                                             "session")}
    return ("<h2 id=\"configuration\">Configuration and environment</h2>\n"
            + table(["item", "value"], facts, text_columns=2)
            + "<p>Data integrity: " + (e(", ".join(f"{k} {v}" for k, v in problems.items()))
                                       if problems else "no lost, duplicate or malformed batches")
            + ".</p>\n<details><summary>Recipe (resolved; trials differ only in the swept "
            "values)</summary>\n<pre>" + e(yaml.safe_dump(recipe, sort_keys=False))
            + "</pre></details>")


def _latency(run: RunData) -> str:
    values = {trial.trial_id: {metric: trial.requests.latency(metric) for metric in LATENCIES}
              for trial in run.trials}
    parts = ["<h2 id=\"latency\">Latency</h2>",
             "<p class=\"note\">Measured requests only, computed from the raw samples "
             "(nearest-rank percentiles). TTFT counts from the intended send time in open loop, "
             "from the send time in closed loop; ITL is one sample per gap between chunks.</p>",
             image(plots.latency_cdfs(values), "Latency CDFs of TTFT, ITL, TPOT and E2E")]
    headers = ["trial", "count", "mean", "min", *PERCENTILE_KEYS, "max"]
    for metric in LATENCIES:
        rows = []
        for trial_id, metrics in values.items():
            stats = exact_stats(metrics[metric])
            rows.append([trial_id, stats["count"], stats["mean"], stats["min"],
                         *(stats[key] for key in PERCENTILE_KEYS), stats["max"]])
        parts.append(f"<h3>{e(plots.TITLES[metric])}, ms</h3>\n" + table(headers, rows))
    return "\n".join(parts)


def _sweep(run: RunData) -> str:
    result = sweep(run.trials)
    if result is None:
        return ""
    definition = (f"Saturation point: the first value of {e(result.parameter)} whose output "
                  f"throughput gained less than {SATURATION_GAIN:.0%} over the previous value "
                  f"while p99 E2E latency grew more than {SATURATION_LATENCY_GROWTH:.0%}.")
    rows, verdicts = [], []
    for series in result.series:
        for point in series.points:
            rows.append([series.label or "-", f"{point.value:g}", point.req_per_s,
                         point.output_tokens_per_s, point.ttft_p50_ms, point.ttft_p99_ms,
                         point.e2e_p50_ms, point.e2e_p99_ms,
                         "saturation" if point is series.saturation else ""])
        where = f" ({series.label})" if series.label else ""
        verdicts.append(f"saturated at {result.parameter}={series.saturation.value:g}{where}"
                        if series.saturation else f"no saturation within the sweep{where}")
    return ("<h2 id=\"sweep\">Sweep</h2>\n"
            + image(plots.sweep_plot(result), f"Throughput and latency against "
                     f"{result.parameter}")
            + f"<p><b>{e('; '.join(verdicts))}</b>. <span class=\"note\">{definition} "
              "Repetitions of a value are averaged.</span></p>\n"
            + table(["series", result.parameter, "req/s", "output tokens/s", "TTFT p50 (ms)",
                      "TTFT p99 (ms)", "E2E p50 (ms)", "E2E p99 (ms)", "point"], rows))


def _goodput(run: RunData) -> str:
    slo_names = sorted({name for trial in run.trials for name in trial.slos_s})
    parts = ["<h2 id=\"goodput\">Goodput against the SLOs</h2>"]
    if not slo_names:
        parts.append("<p>The recipe sets no SLOs (workload.slo), so every successful request "
                     "counts as good. Add e.g. <code>slo: {ttft: 500ms, itl: 50ms}</code> to "
                     "measure goodput.</p>")
    rows, bars = [], []
    for trial in run.trials:
        attained = slo_attainment(trial.requests, trial.slos_s,
                                  trial.summary["overall"].get("seconds"))
        throughput = trial.summary["overall"].get("req_per_s")
        bars.append((trial.trial_id, throughput, attained.rate(attained.good)))
        rows.append([trial.trial_id, attained.requests, attained.good,
                     percent(attained.good, attained.requests), throughput,
                     attained.rate(attained.good),
                     *(percent(attained.within[name], attained.requests)
                       if name in attained.within else "-" for name in slo_names)])
    thresholds = ", ".join(f"{name} ≤ {limit * 1e3:g} ms" for name, limit in
                           sorted(run.trials[0].slos_s.items()))
    if thresholds:
        parts.append(f"<p>SLOs: {e(thresholds)}. A request is good when it succeeded and meets "
                     "every SLO (ITL: its largest gap).</p>")
    parts.append(image(plots.goodput_plot(bars), "Throughput and goodput per trial"))
    parts.append(table(["trial", "requests", "good", "good %", "throughput req/s",
                         "goodput req/s", *(f"within {name} SLO %" for name in slo_names)],
                        rows))
    return "\n".join(parts)


def _over_time(run: RunData) -> str:
    parts = ["<h2 id=\"over-time\">Each trial over time</h2>"]
    for trial in run.trials:
        binned = timeline(trial.requests)
        parts.append(f"<h3>{e(trial.trial_id)}</h3>")
        if binned is None:
            parts.append("<p>No measured request.</p>")
            continue
        parts.append(image(plots.trial_over_time(trial.trial_id, binned),
                           f"Latency percentiles and outcomes over time, {trial.trial_id}"))
    return "\n".join(parts)


def _telemetry(run: RunData) -> str:
    parts = ["<h2 id=\"telemetry\">Telemetry per node</h2>"]
    if not run.telemetry:
        parts.append("<p>No telemetry: the run has no telemetry/&lt;node&gt;.csv (monitoring "
                     "disabled in the recipe?).</p>")
        return "\n".join(parts)
    windows_ns = []
    for trial in run.trials:
        start = trial.requests.measured_start_ns()
        if start is not None:
            end = int(trial.requests.wall_ns("end_ns")[trial.requests.measured].max())
            windows_ns.append((trial.trial_id, start, end))
    zero = min([int(item.times_ns.min()) for item in run.telemetry]
               + [start for _, start, _ in windows_ns])
    windows = [(trial_id, (start - zero) / 1e9, (end - zero) / 1e9)
               for trial_id, start, end in windows_ns]
    parts.append("<p class=\"note\">Shaded spans are the trials' measured windows "
                 f"({e(', '.join(trial_id for trial_id, _, _ in windows))}).</p>")
    for item in run.telemetry:
        seconds = (item.times_ns - zero) / 1e9
        parts.append(image(plots.telemetry_plot(item.node, seconds, item.columns, windows),
                            f"Telemetry of node {item.node}"))
    return "\n".join(parts)
