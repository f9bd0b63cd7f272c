"""Files a run exports besides the HTML: the run summary across trials and per-request tables.

    <run>/summary.json   every finished trial: params, repetition, overall statistics (HDR) and
                         exact ones from raw samples, GPU energy (null: not measured);
                         unfinished trials by name
    <run>/summary.csv    one row per trial: throughput, goodput, errors, p50/p90/p99 (ms) of
                         TTFT, ITL, TPOT, E2E (exact figures where the trial has raw samples),
                         GPU energy (J, output tokens per J; energy_source "not measured" and
                         empty figures without GPU telemetry) and, in multi-turn runs,
                         conversations started/completed/failed/cut and their duration
    <run>/conversations.csv  multi-turn runs: one row per trial and turn index (counts, mean
                         tokens, TTFT and E2E p50/p90/p99 ms); summary.json then also has
                         each trial's `conversations` block (per conversation and per turn)
    <run>/requests.csv   one row per request of every trial (all phases; filter on `phase`),
    <run>/requests.jsonl the same rows as JSON objects; `hpcbench report --export csv|jsonl`

Times in the per-request export are wall-clock Unix ns (the executor's perf_counter reading plus
its epoch offset), latencies ms; an undefined latency is empty (CSV) or null (JSONL).
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson

from hpcbench.common.files import atomic_output, write_atomic
from hpcbench.common.measure.definitions import MISSING
from hpcbench.coordinator.report.conversations import (
    conversation_columns,
    conversation_trials,
    write_conversation_table,
)
from hpcbench.coordinator.report.requests import RequestTable
from hpcbench.coordinator.report.rundata import RunData
from hpcbench.coordinator.session.results import _csv as csv_text
from hpcbench.proto.samples import ErrorClass, Phase, TokenSource

EXPORT_FORMATS = ("csv", "jsonl")
NOT_MEASURED = "not measured"
SUMMARY_PERCENTILES = ("p50", "p90", "p99")
REQUEST_FIELDS = ("trial", "executor", "node", "req_id", "phase", "error", "status",
                  "intended_unix_ns", "send_unix_ns", "first_unix_ns", "end_unix_ns", "chunks",
                  "tokens_in", "tokens_out", "token_source", "slot", "conversation", "turn",
                  "turns", "ttft_ms", "tpot_ms", "e2e_ms", "max_itl_ms", "reasoning_tokens",
                  "ttfr_ms", "ttfa_ms")


def latency_stats(trial) -> dict[str, dict]:
    """Per metric statistics (ms) of a trial: exact from raw samples when present, else HDR."""
    return trial.summary.get("exact") or trial.summary["overall"]["latency"]


def energy_figures(trial) -> dict:
    """A trial's GPU energy over its measured window (summary.json `energy`, written when GPUs
    reported telemetry): joules and output tokens per joule, None and NOT_MEASURED without."""
    energy = trial.summary.get("energy")
    if not energy:
        return {"energy_j": None, "output_tokens_per_joule": None, "energy_source": NOT_MEASURED}
    return {"energy_j": energy["joules"],
            "output_tokens_per_joule": energy["output_tokens_per_joule"],
            "energy_source": energy["source"]}


def run_summary(run: RunData) -> dict:
    return {
        "scenario": run.scenario, "session": run.session_id, "latency_unit": "ms",
        "trials": [{"trial": trial.trial_id, "repetition": trial.repetition,
                    "params": trial.params, "slos_s": trial.slos_s,
                    "overall": trial.summary["overall"], "exact": trial.summary.get("exact"),
                    "energy": trial.summary.get("energy"),
                    "conversations": trial.summary.get("conversations"),
                    "verdict": trial.outcome.get("verdict"),
                    "problems": trial.outcome.get("problems", []),
                    "attempt": trial.attempt, "earlier_attempts": trial.earlier}
                   for trial in run.trials],
        "unfinished": run.unfinished,
    }


def summary_rows(run: RunData) -> list[dict]:
    parameters = sorted({name for trial in run.trials for name in trial.params})
    talks = bool(conversation_trials(run))      # multi-turn: conversation columns for all
    rows = []
    for trial in run.trials:
        overall = trial.summary["overall"]
        row = {"trial": trial.trial_id, "repetition": trial.repetition,
               **{name: trial.params.get(name) for name in parameters},
               **{key: overall.get(key) for key in (
                   "requests", "ok", "error_total", "seconds", "req_per_s",
                   "output_tokens_per_s", "total_tokens_per_s", "goodput_req_per_s",
                   "reasoning_tokens", "answer_tokens")}}
        stats = latency_stats(trial)
        for metric in ("ttft", "itl", "tpot", "e2e", "ttfr", "ttfa"):
            for key in SUMMARY_PERCENTILES:   # ttfr/ttfa: absent in runs recorded before them
                row[f"{metric}_{key}_ms"] = (stats.get(metric) or {}).get(key)
        row.update(energy_figures(trial))
        if talks:
            row.update(conversation_columns(trial))
        rows.append(row)
    return rows


def write_run_summary(run: RunData) -> tuple[Path, Path]:
    json_path, csv_path = run.run_dir / "summary.json", run.run_dir / "summary.csv"
    write_atomic(json_path, json.dumps(run_summary(run), indent=2) + "\n")
    write_atomic(csv_path, csv_text(summary_rows(run)))
    write_conversation_table(run)
    return json_path, csv_path


def export_requests(run: RunData, fmt: str) -> Path:
    """Write <run>/requests.<fmt> with every request of every finished trial."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format {fmt!r} is not one of {EXPORT_FORMATS}")
    path = run.run_dir / f"requests.{fmt}"
    with atomic_output(path) as out:
        if fmt == "csv":
            text = io.TextIOWrapper(out, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(REQUEST_FIELDS)
            for trial in run.trials:
                for row in request_rows(trial.trial_id, trial.requests):
                    writer.writerow(["" if value is None else value for value in row])
            text.flush()
            text.detach()
        else:
            for trial in run.trials:
                for row in request_rows(trial.trial_id, trial.requests):
                    out.write(orjson.dumps(dict(zip(REQUEST_FIELDS, row))) + b"\n")
    return path


def request_rows(trial_id: str, table: RequestTable) -> Iterator[tuple]:
    """One tuple per request in REQUEST_FIELDS order, as plain Python values."""
    cols = table.columns
    names = {"phase": {p.value: p.name.lower() for p in Phase},
             "error": {e.value: e.name.lower() for e in ErrorClass},
             "token_source": {t.value: t.name.lower() for t in TokenSource}}
    wall = {name: table.wall_ns(name).tolist()
            for name in ("intended_ns", "send_ns", "first_ns", "end_ns")}
    latencies = {name: _ms_or_none(cols[name])
                 for name in ("ttft_ns", "tpot_ns", "e2e_ns", "max_itl_ns", "ttfr_ns", "ttfa_ns")}
    plain = {name: cols[name].tolist() for name in (
        "executor", "node", "req_id", "phase", "error", "status", "chunks", "tokens_in",
        "tokens_out", "token_source", "slot", "conversation", "turn", "turns",
        "reasoning_tokens")}
    for i in range(len(table)):
        yield (trial_id, table.executors[plain["executor"][i]], table.nodes[plain["node"][i]],
               plain["req_id"][i], names["phase"].get(plain["phase"][i], plain["phase"][i]),
               names["error"].get(plain["error"][i], plain["error"][i]), plain["status"][i],
               wall["intended_ns"][i] or None, wall["send_ns"][i] or None,
               wall["first_ns"][i] or None, wall["end_ns"][i] or None, plain["chunks"][i],
               plain["tokens_in"][i], plain["tokens_out"][i],
               names["token_source"].get(plain["token_source"][i], plain["token_source"][i]),
               plain["slot"][i], plain["conversation"][i], plain["turn"][i], plain["turns"][i],
               latencies["ttft_ns"][i], latencies["tpot_ns"][i],
               latencies["e2e_ns"][i], latencies["max_itl_ns"][i], plain["reasoning_tokens"][i],
               latencies["ttfr_ns"][i], latencies["ttfa_ns"][i])


def _ms_or_none(values: np.ndarray) -> list[float | None]:
    return [None if value == MISSING else value / 1e6 for value in values.tolist()]

