"""A run directory read back: session record, finished trials, node telemetry.

A run directory is results/<scenario>/<session>/ (coordinator/session/results.py): one directory per
trial, session.json written at the end of the session, and telemetry/<node>.csv written by the
monitors (monitor/csv_log.py). Only finished trials (with trial.done) are reported; unfinished
ones are listed by name so a user sees they exist.

A trial directory holds the trial's final (newest) attempt, the one every figure is made of;
earlier attempts of a re-run session are kept in <trial>/attempts/N and only listed (their
verdicts, in `TrialData.earlier`), never mixed into figures.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import numpy as np

from hpcbench.common.errors import HpcbenchError, config_error
from hpcbench.coordinator.report.requests import RequestTable, load_requests
from hpcbench.coordinator.session.results import (
    DONE,
    RECIPE,
    SAMPLES,
    SUMMARY_JSON,
    read_outcome,
    trial_attempts,
)
from hpcbench.coordinator.session.server_view import SERVER_METRICS, read_rows
from hpcbench.coordinator.session.session_file import read_record
from hpcbench.recipes.loader import read_yaml

TELEMETRY_DIR = "telemetry"


@dataclass
class TrialData:
    trial_id: str
    directory: Path
    recipe: dict
    summary: dict          # summary.json without the encoded histograms
    outcome: dict = field(default_factory=dict)   # trial.done: verdict, problems, attempt
    earlier: list[dict] = field(default_factory=list)  # earlier attempts: attempt, verdict, why

    @property
    def passed(self) -> bool:
        return self.outcome.get("verdict") == "passed"

    @property
    def attempt(self) -> int:
        return int(self.outcome.get("attempt") or len(self.earlier) + 1)

    @property
    def index(self) -> int:
        return int(self.recipe.get("trial", {}).get("index", 0))

    @property
    def repetition(self) -> int:
        return int(self.recipe.get("trial", {}).get("repetition", 1))

    @property
    def params(self) -> dict:
        return dict(self.recipe.get("trial", {}).get("params") or {})

    @property
    def slos_s(self) -> dict[str, float]:
        return dict(self.summary.get("slos_s") or {})

    @cached_property
    def server_rows(self) -> list[tuple[int, str, str, str, float]]:
        """server_metrics.csv: the server's scrapes over the window ([] without the file)."""
        path = self.directory / SERVER_METRICS
        if not path.is_file():
            return []
        try:
            return read_rows(path)
        except OSError:
            return []

    @cached_property
    def requests(self) -> RequestTable:
        try:
            return load_requests(self.directory / SAMPLES)
        except (OSError, ValueError) as error:  # SampleBatchError is a ValueError
            raise config_error(f"trial {self.directory}: its raw samples ({SAMPLES}) cannot "
                               f"be read: {error}",
                               ("the trial's results are damaged; move that trial directory "
                                "aside to report the others, or rerun it under a new "
                                "session id",)) from None


@dataclass
class NodeTelemetry:
    """One node's CSV: wall-clock times (ns) and one float column per metric (NaN if empty)."""

    node: str
    times_ns: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class RunData:
    run_dir: Path
    session: dict | None
    trials: list[TrialData]
    unfinished: list[str]
    telemetry: list[NodeTelemetry]
    earlier_unfinished: dict[str, list[dict]] = field(default_factory=dict)  # cut: earlier

    def attempt_notes(self) -> list[str]:
        """One line per trial measured more than once: which attempt the figures are, and the
        earlier attempts' verdicts (kept in <trial>/attempts/, in no figure)."""
        notes = [f"{trial.trial_id}: figures of attempt {trial.attempt} "
                 f"({trial.outcome.get('verdict', 'unknown')}); earlier: "
                 + "; ".join(_attempt_text(item) for item in trial.earlier)
                 for trial in self.trials if trial.earlier]
        notes += [f"{trial_id}: newest attempt cut, not reported; earlier: "
                  + "; ".join(_attempt_text(item) for item in earlier)
                  for trial_id, earlier in self.earlier_unfinished.items()]
        return notes

    @property
    def scenario(self) -> str:
        return self.run_dir.parent.name

    @property
    def session_id(self) -> str:
        return self.run_dir.name

    @property
    def recipe(self) -> dict:
        """The first trial's recipe: the session's settings (trials differ in swept values)."""
        return self.trials[0].recipe

    @property
    def nodes(self) -> list[str]:
        names = {node for trial in self.trials for node in trial.requests.nodes}
        names.update(item.node for item in self.telemetry)
        return sorted(names)


def load_run(run_dir: Path) -> RunData:
    """Read a run directory; E006 naming the path and the fix when it is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise config_error(f"run directory {run_dir} does not exist",
                           ("pass results/<scenario>/<session>, as printed at the end of "
                            "`hpcbench run`",))
    if (run_dir / DONE).exists():
        raise config_error(f"{run_dir} is one trial's directory, not a run directory",
                           (f"pass its parent: {run_dir.parent}",))
    trials, unfinished, earlier_unfinished = [], [], {}
    for entry in sorted(path for path in run_dir.iterdir() if path.is_dir()):
        if (entry / DONE).is_file():
            trials.append(_load_trial(entry))
        elif (entry / RECIPE).is_file():
            unfinished.append(entry.name)
            earlier = _earlier_attempts(entry)
            if earlier:
                earlier_unfinished[entry.name] = earlier
    if not trials:
        raise config_error(f"no finished trial (a directory with {DONE}) in {run_dir}",
                           ("pass results/<scenario>/<session> of a run that finished at least "
                            "one trial",))
    trials.sort(key=lambda trial: (trial.index, trial.trial_id))
    session = read_record(run_dir) or None
    telemetry = [_load_telemetry(path)
                 for path in sorted((run_dir / TELEMETRY_DIR).glob("*.csv"))]
    return RunData(run_dir, session, trials, unfinished,
                   [item for item in telemetry if len(item.times_ns)], earlier_unfinished)


def _load_trial(directory: Path) -> TrialData:
    try:
        summary = json.loads((directory / SUMMARY_JSON).read_text())
        recipe = read_yaml(directory / RECIPE) or {}   # bounded: a results tree may be anyone's
    except (OSError, ValueError, HpcbenchError) as error:
        raise config_error(f"trial {directory} is marked finished but cannot be read: {error}",
                           ("its results are damaged; rerun that trial under a new session "
                            "id",)) from None
    summary.pop("histograms", None)
    return TrialData(directory.name, directory, recipe, summary,
                     read_outcome(directory) or {}, _earlier_attempts(directory))


def _earlier_attempts(directory: Path) -> list[dict]:
    """The trial's attempts before the one in its directory: number, verdict, why."""
    return [{"attempt": item["attempt"], "verdict": item["verdict"],
             "problems": item.get("problems") or ([item["reason"]] if item.get("reason")
                                                  else [])}
            for item in trial_attempts(directory) if item["directory"] != directory]


def _attempt_text(attempt: dict) -> str:
    why = "; ".join(attempt["problems"])
    return f"attempt {attempt['attempt']} {attempt['verdict']}" + (f" ({why})" if why else "")


def _load_telemetry(path: Path) -> NodeTelemetry:
    """A monitor CSV; rows with an unreadable timestamp (e.g. a torn last line) are skipped."""
    times: list[int] = []
    rows: list[dict[str, str]] = []
    with open(path, newline="", encoding="utf-8") as source:
        for row in csv.DictReader(source):
            try:
                stamp = datetime.fromisoformat(row.get("timestamp") or "")
            except ValueError:
                continue
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=timezone.utc)  # monitor CSVs are UTC
            times.append(int(stamp.timestamp() * 1e9))
            rows.append(row)
    names = [name for name in (rows[0] if rows else {}) if name != "timestamp"]
    columns = {name: np.array([_float(row.get(name)) for row in rows]) for name in names}
    return NodeTelemetry(path.stem, np.array(times, dtype=np.int64), columns)


def _float(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")
