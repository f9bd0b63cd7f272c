"""The multi-turn part of a run's results: the report section and conversations.csv.

Both read each trial's summary.json `conversations` block (common/measure/conversations.py
computes it from the raw samples when the trial closes); trials without conversations are
left out, and a run without any gets neither the section nor the file.
"""
from __future__ import annotations

from pathlib import Path

from hpcbench.common.files import write_atomic
from hpcbench.coordinator.report import plots
from hpcbench.coordinator.report.markup import e, image, percent, table
from hpcbench.coordinator.report.rundata import RunData
from hpcbench.coordinator.session.results import _csv as csv_text

CONVERSATIONS_CSV = "conversations.csv"
TURN_PERCENTILES = ("p50", "p90", "p99")


def conversation_trials(run: RunData) -> list:
    return [trial for trial in run.trials if trial.summary.get("conversations")]


def turn_rows(run: RunData) -> list[dict]:
    """One row per trial and turn index (1-based): counts, mean tokens, TTFT and E2E (ms)."""
    rows = []
    for trial in conversation_trials(run):
        for turn in trial.summary["conversations"]["turns"]:
            rows.append({"trial": trial.trial_id, "turn": turn["turn"],
                         **{key: turn[key] for key in ("requests", "ok", "errors",
                                                       "input_tokens_mean",
                                                       "output_tokens_mean")},
                         **{f"{metric}_{key}_ms": turn[metric][key]
                            for metric in ("ttft", "e2e") for key in TURN_PERCENTILES}})
    return rows


def conversation_columns(trial) -> dict:
    """A trial's conversation figures as run summary.csv columns (None: it had none)."""
    talk = trial.summary.get("conversations") or {}
    duration = talk.get("duration") or {}
    return {**{f"conversations_{key}": talk.get(key)
               for key in ("started", "completed", "failed", "cut")},
            **{f"conversation_duration_{key}_ms": duration.get(key)
               for key in TURN_PERCENTILES}}


def write_conversation_table(run: RunData) -> Path | None:
    """<run>/conversations.csv (turn_rows) when the run has conversations."""
    rows = turn_rows(run)
    if not rows:
        return None
    path = run.run_dir / CONVERSATIONS_CSV
    write_atomic(path, csv_text(rows))
    return path


def section(run: RunData) -> str:
    """The report's "Conversations" section ("" without conversations)."""
    trials = conversation_trials(run)
    if not trials:
        return ""
    parts = ["<h2 id=\"conversations\">Conversations</h2>",
             "<p class=\"note\">Each turn sends the history so far (earlier questions and the "
             "answers received) plus the next question, once the previous answer ended and a "
             "think time passed. Conversations are counted when their first turn was scheduled "
             "in the measured window: completed (every turn answered), failed (a turn failed, "
             "which ends it) or cut (the window ended first). Duration: first turn's intended "
             "send to the last answer's end, think times included.</p>"]
    rows = []
    for trial in trials:
        talk = trial.summary["conversations"]
        rows.append([trial.trial_id, talk["started"], talk["completed"],
                     percent(talk["completed"], talk["started"]), talk["failed"], talk["cut"],
                     talk["turns_planned_mean"], talk["turns_completed_mean"],
                     talk["duration"]["p50"], talk["duration"]["p99"]])
    parts.append(table(["trial", "started", "completed", "completed %", "failed", "cut",
                        "turns planned (mean)", "turns answered (mean)",
                        "duration p50 (ms)", "duration p99 (ms)"], rows))
    series = {trial.trial_id: [(turn["turn"], turn["ttft"]["p50"], turn["ttft"]["p99"])
                               for turn in trial.summary["conversations"]["turns"]]
              for trial in trials}
    parts.append(image(plots.turn_ttft_plot(series), "TTFT by turn index"))
    parts.append("<h3>By turn index</h3><p class=\"note\">Measured turns of each index, "
                 "whichever conversation they belong to; input tokens grow with the history "
                 "each turn sends.</p>")
    parts.append(table(["trial", "turn", "requests", "ok", "errors", "input tokens (mean)",
                        "output tokens (mean)",
                        *(f"TTFT {key} (ms)" for key in TURN_PERCENTILES),
                        *(f"E2E {key} (ms)" for key in TURN_PERCENTILES)],
                       [list(row.values()) for row in turn_rows(run)]))
    return "\n".join(parts) + f"\n<p>Also in {e(CONVERSATIONS_CSV)}.</p>"
