"""What `hpcbench run` shows: a live progress panel while the session runs, then a summary.

Live (rich, on a terminal): phase, trial i/n and its phase, elapsed, req/s, TTFT p50/p99,
errors, refreshed 4 times a second. Elsewhere (CI logs, pipes): one plain line when something
changed, at most every 2 seconds. The summary table has one row per trial of this run.
"""
from __future__ import annotations

import time

from rich import box
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from hpcbench.coordinator.session.recording import headline

PLAIN_EVERY_S = 2.0


def follow(session, console: Console, live: bool) -> None:
    """Show progress until the session has finished."""
    if live and console.is_terminal:
        with Live(panel(session), console=console, refresh_per_second=4,
                  transient=False) as display:
            while not session.wait(0.25):
                display.update(panel(session))
            display.update(panel(session))
        return
    last_key, last_time, shown = None, 0.0, -1
    while not session.wait(0.25):
        shown = _print_passed_phases(session, console, shown)
        status = session.status()
        key = (status.state, status.trial.trial_id, status.trial.phase)
        if key != last_key or time.monotonic() - last_time >= PLAIN_EVERY_S:
            console.print(progress_line(session), highlight=False)
            last_key, last_time = key, time.monotonic()
    _print_passed_phases(session, console, shown)


def _print_passed_phases(session, console: Console, shown: int) -> int:
    """A line for each session state entered and left between two looks (a quick teardown,
    say), so the plain output names every phase: those after phase number `shown` (the one
    current at the last look, printed then) and before the current one (printed by the
    caller, or by the closing line at the end). Returns the current phase's number."""
    phases = list(session.phases)
    for phase in phases[shown + 1:-1]:
        console.print(f"[{phase['at_s']:6.1f}s] {phase['state'].lower()}", highlight=False)
    return max(len(phases) - 1, shown)


def progress_line(session) -> str:
    status = session.status()
    figures = headline(session.feed.latest_snapshot)
    parts = [f"[{status.elapsed_s:6.1f}s] {status.state_name.lower()}"]
    if status.trial.trial_id:
        trial = status.trial
        parts.append(f"trial {trial.index + 1}/{trial.total} {trial.trial_id} {trial.phase} "
                     f"{trial.elapsed_s:.0f}/{trial.duration_s:.0f}s")
        parts.append(f"{_number(figures['req_per_s'])} req/s")
        parts.append(f"TTFT p50 {_number(figures['ttft_p50'])} p99 "
                     f"{_number(figures['ttft_p99'])} ms")
        if figures["ttfr_p50"] is not None:
            parts.append(_reasoning(figures))
        parts.append(f"{figures['requests']} requests, {figures['errors']} errors")
    return " | ".join(parts)


def panel(session) -> Table:
    """The live panel; `session` needs `status()` (a Control.Status reply) and
    `feed.latest_snapshot` (also cli/watch_panel.py, for a session followed from outside)."""
    status = session.status()
    figures = headline(session.feed.latest_snapshot)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("session", f"{status.session_id}  ({status.scenario or '...'})")
    table.add_row("phase", status.state_name.lower())
    if status.trial.trial_id:
        trial = status.trial
        table.add_row("trial", f"{trial.index + 1}/{trial.total}  {trial.trial_id}  "
                               f"[cyan]{trial.phase}[/] {trial.elapsed_s:.0f}/"
                               f"{trial.duration_s:.0f}s")
        table.add_row("req/s", _number(figures["req_per_s"]))
        table.add_row("TTFT", f"p50 {_number(figures['ttft_p50'])} ms   "
                              f"p99 {_number(figures['ttft_p99'])} ms")
        if figures["ttfr_p50"] is not None:
            table.add_row("reasoning", _reasoning(figures))
        table.add_row("requests", f"{figures['requests']} measured, {figures['warmup']} warmup")
        errors = figures["errors"]
        table.add_row("errors", f"[red]{errors}[/]" if errors else "0")
    table.add_row("elapsed", f"{status.elapsed_s:.1f}s   trials done {status.trials_done}"
                             f"/{status.trials_total}"
                             + (f" ({status.trials_skipped} skipped: finished before)"
                                if status.trials_skipped else ""))
    return table


def summary_table(session) -> Table:
    """One row per trial run now: throughput, latency percentiles, errors, verdict."""
    results = session.all_results()
    caption = "latencies in ms; tok/s = output tokens per second"
    if any(result.get("earlier") for result in results):
        caption += "; * passed in an earlier run of this session (skipped now)"
    if any((result.get("attempt") or 1) > 1 for result in results):
        caption += "; (attempt N): earlier attempts kept in <trial>/attempts/"
    table = Table(title=f"{session.scenario} / {session.session_id}", title_justify="left",
                  caption=caption,
                  caption_justify="left", box=box.SIMPLE_HEAD, padding=(0, 0),
                  pad_edge=False)
    for heading in ("trial", "reqs", "req/s", "tok/s", "TTFT\np50", "TTFT\np99", "ITL\np50",
                    "ITL\np99", "E2E\np99", "errors", "result"):
        table.add_column(heading, justify="left" if heading in ("trial", "result") else "right")
    for result in results:
        overall = result["summary"]["overall"]
        latency = overall["latency"]
        table.add_row(
            result["trial_id"], str(overall["requests"]), _number(overall["req_per_s"]),
            _number(overall["output_tokens_per_s"]), _ms(latency["ttft"]["p50"]),
            _ms(latency["ttft"]["p99"]), _ms(latency["itl"]["p50"]), _ms(latency["itl"]["p99"]),
            _ms(latency["e2e"]["p99"]), str(overall["error_total"]),
            ("[green]ok[/]" if result["passed"] else "[red]FAILED[/]")
            + (f" (attempt {result['attempt']})" if (result.get("attempt") or 1) > 1 else "")
            + (" *" if result.get("earlier") else ""))
    return table


def search_table(search: dict) -> Table:
    """A capacity search's probes (session.json's `search`): load, checks, verdict, why."""
    from hpcbench.coordinator.report.capacity import PROBE_HEADERS, probe_rows, slo_text

    table = Table(title=escape(f"capacity search: {slo_text(search)}"), title_justify="left",
                  caption=escape("percentile [confidence interval]; close: the SLO limit lies "
                                 "inside the interval (a bracket end then runs again)"),
                  caption_justify="left",
                  box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    shown = [index for index, heading in enumerate(PROBE_HEADERS) if heading != "trial"]
    for index in shown:       # the trial id repeats the load: the summary table above has it
        heading = PROBE_HEADERS[index]
        table.add_column(escape(heading),
                         justify="right" if heading in ("#", "load", "run") else "left")
    for row in probe_rows(search):
        table.add_row(*(escape(str(row[index])) for index in shown))
    return table


def final_line(session) -> str:
    status = session.status()
    text = (f"{status.state_name.lower()}: {status.trials_done} trial(s) run, "
            f"{status.trials_skipped} skipped, {status.elapsed_s:.1f}s; results in {status.run_dir}")
    return text


def _reasoning(figures: dict) -> str:
    """First reasoning and first answer token, p50 (docs/metrics.md, "Reasoning tokens")."""
    return (f"TTFR p50 {_number(figures['ttfr_p50'])} ms, TTFA p50 "
            f"{_number(figures['ttfa_p50'])} ms")


def _number(value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"
