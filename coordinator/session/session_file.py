"""session.json: every run of a session, each trial's attempts with their verdicts, and totals
of what is on disk for the final attempts.

The session (lifecycle.py) writes it when a run has something to measure (as the run starts
and as each of its trials starts, the run's state then being RUNNING) and when the run ends. A
run that finds every trial passed measures nothing and leaves it as it is. Each write is built
from the trial directories (results.trial_attempts: the verdicts stored in trial.done, never
decided again here) and from the runs the file already lists, so a re-run never forgets an
earlier run and never counts an earlier attempt's files. A run still RUNNING when a later one
reads the file never recorded its end (its coordinator was killed): it becomes INTERRUPTED.
"""
from __future__ import annotations

import json
from pathlib import Path

from hpcbench.coordinator.session import verdicts
from hpcbench.coordinator.session.results import (
    DONE,
    PARTIAL,
    SAMPLES,
    read_samples,
    read_summary,
    trial_attempts,
    write_atomic,
)

FORMAT = 2
SESSION_FILE = "session.json"
RUNNING = "RUNNING"
INTERRUPTED = "INTERRUPTED"
ENDED = ("COMPLETED", "FAILED", "STOPPED", INTERRUPTED)
TOTALS_COVER = ("the final attempt of each trial of the sweep, counted from its files on "
                "disk: samples.msgpack (samples.msgpack.partial for a cut attempt) and "
                "summary.json in <trial>/; earlier attempts under <trial>/attempts/ are not "
                "counted")


def read_record(session_dir: Path) -> dict:
    """The session.json an earlier run wrote ({} if none or unreadable)."""
    try:
        record = json.loads((Path(session_dir) / SESSION_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def earlier_runs(record: dict) -> list[dict]:
    """The runs an earlier session.json lists, the one an older hpcbench wrote (it kept only
    its last run) as one run; a run that never recorded its end is INTERRUPTED."""
    if not record:
        return []
    if isinstance(record.get("runs"), list):
        runs = [dict(run) for run in record["runs"] if isinstance(run, dict)]
    else:
        trials = [trial for trial in record.get("trials") or () if isinstance(trial, dict)]
        runs = [{"run": 1, "started": None, "ended": None, "state": record.get("state"),
                 "error": record.get("error"),
                 "trials_run": [t.get("trial_id") for t in trials if not t.get("earlier_run")],
                 "trials_skipped": [t.get("trial_id") for t in trials if t.get("earlier_run")],
                 "elapsed_s": record.get("elapsed_s"), "phases": record.get("phases"),
                 "integrity": record.get("integrity"),
                 "server_version": record.get("server_version"),
                 "note": "recorded by an older hpcbench, which kept only the last run"}]
    for run in runs:
        if run.get("state") not in ENDED:
            run.update(state=INTERRUPTED, error="the run never recorded its end: its "
                       "coordinator was killed or its node lost")
    return runs


def next_run_number(runs: list[dict]) -> int:
    return max((run.get("run") or 0 for run in runs), default=0) + 1


def trial_entries(session_dir: Path, trials, current_run: int,
                  running: str | None = None) -> list[dict]:
    """Per trial of the sweep (objects with id, index, params): its attempts, oldest first,
    and the verdict of the final one. `running`: the trial this run is measuring now (its
    newest attempt is `running`, not cut)."""
    entries = []
    for trial in trials:
        attempts = []
        for attempt in trial_attempts(Path(session_dir) / trial.id):
            entry = {"attempt": attempt["attempt"], "verdict": attempt["verdict"],
                     "session_run": attempt.get("session_run"),
                     "directory": str(Path(attempt["directory"]).relative_to(session_dir)),
                     "problems": attempt.get("problems", [])}
            if attempt["verdict"] == verdicts.CUT:
                entry["reason"] = attempt.get("reason")
            attempts.append(entry)
        if running == trial.id and attempts:
            attempts[-1].update(verdict="running", reason=None)
        final = attempts[-1] if attempts else None
        verdict = final["verdict"] if final else verdicts.NOT_RUN
        problems = []
        if final:      # a failed attempt's problems, or why a cut one stopped
            problems = final["problems"] or ([final["reason"]] if final.get("reason") else [])
        entries.append({"trial_id": trial.id, "index": trial.index, "params": trial.params,
                        "verdict": verdict, "passed": verdict == verdicts.PASSED,
                        "problems": problems, "attempts": attempts,
                        "earlier_run": bool(final) and final["session_run"] != current_run})
    return entries


def totals(session_dir: Path, entries: list[dict]) -> dict:
    """What is on disk for the final attempt of each trial (TOTALS_COVER)."""
    counts = {"covers": TOTALS_COVER, "trials": len(entries),
              **{key.replace("-", "_"): 0 for key in (verdicts.PASSED, verdicts.FAILED,
                                                      verdicts.CUT, verdicts.NOT_RUN)},
              "batches": 0, "samples": 0, "requests": 0, "measured_requests": 0,
              "unreadable": []}
    for entry in entries:
        verdict = entry["verdict"].replace("-", "_")
        if verdict in counts:
            counts[verdict] += 1
        if not entry["attempts"]:
            continue
        directory = Path(session_dir) / entry["attempts"][-1]["directory"]
        stored = count_stored(directory)
        for key in ("batches", "samples", "requests"):
            counts[key] += stored[key]
        if stored["unreadable"]:
            counts["unreadable"].append(f"{entry['attempts'][-1]['directory']}: "
                                        f"{stored['unreadable']}")
        if (directory / DONE).is_file():
            try:
                counts["measured_requests"] += read_summary(directory)["overall"]["requests"]
            except (OSError, ValueError, KeyError) as error:
                counts["unreadable"].append(f"{entry['attempts'][-1]['directory']}: {error}")
    return counts


def count_stored(attempt_dir: Path) -> dict:
    """Batches, samples (one per request plus one per inter-token gap, the unit of the
    aggregator's `samples` counter) and request rows (warmup, measured and drain) in an
    attempt's raw samples file; `unreadable`: why counting stopped early, if it did."""
    counts = {"batches": 0, "samples": 0, "requests": 0, "unreadable": None}
    for name in (SAMPLES, SAMPLES + PARTIAL):
        path = Path(attempt_dir) / name
        if path.is_file():
            break
    else:
        return counts
    try:
        for batch in read_samples(path):
            counts["batches"] += 1
            counts["requests"] += batch.n
            counts["samples"] += batch.n + len(batch.itl_ns)
    except (OSError, ValueError) as error:   # SampleBatchError is a ValueError
        counts["unreadable"] = str(error)
    return counts


def build(*, session_id: str, scenario: str, session_dir: Path, trials, runs: list[dict],
          server_version: str | None, ended: bool, running: str | None = None) -> dict:
    """The whole session.json: `runs` ends with the current run's entry (its number is the
    one attempts measured now carry); totals only once the run has `ended` (while it runs,
    null: they read every final attempt's raw samples)."""
    current = runs[-1]
    entries = trial_entries(session_dir, trials, current["run"], running)
    return {
        "format": FORMAT, "session": session_id, "scenario": scenario,
        "state": current["state"], "error": current.get("error"),
        "passed": bool(entries) and all(entry["passed"] for entry in entries),
        "trials": entries,
        "totals": totals(session_dir, entries) if ended else None,
        "runs": runs,
        "server_version": server_version,
        # the last run's, as in runs[-1]
        "skipped": len(current.get("trials_skipped") or ()),
        "elapsed_s": current.get("elapsed_s"), "phases": current.get("phases"),
    }


def write(session_dir: Path, record: dict) -> None:
    write_atomic(Path(session_dir) / SESSION_FILE,
                 json.dumps(record, indent=2, default=str) + "\n")
