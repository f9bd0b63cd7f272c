"""Results on disk: one directory per trial, written atomically, never rewritten once finished.

Layout: <results>/<scenario>/<session>/<trial>/
    recipe.yaml        the trial's resolved recipe
    samples.msgpack    every accepted sample batch, byte for byte as received, concatenated
                       (msgpack maps of proto/samples.py; `read_samples` iterates them): lossless
    node_samples/      histogram mode only, while the trial runs: one raw file per executor,
                       <executor>.msgpack(.partial), written by the executor on its node; the
                       trial's end gathers them into samples.msgpack (docs/scale.md)
    histograms.hlog    HdrHistogram interval log (format 1.3), one line per interval and metric,
                       Tag=<metric>, values in ns (Interval_Max in ms); HistogramLogProcessor and
                       the Python `hdrhistogram` package read it
    summary.json       TrialSummary: counts, rates, goodput, errors by class, HDR statistics
                       beside exact ones from the raw samples, integrity counters, and the
                       cumulative histogram of each metric (base64 V2, for later merging)
    summary.csv        one row per metric and source (hdr, exact): count, mean, min, p50, p90,
                       p95, p99, p99.9, max in ms, with the trial's throughput columns
    logs/              component logs of the trial
    trial.done         written last: the trial is finished, with its verdict (verdicts.py),
                       attempt number and session run; it is never rewritten
    trial.stopped      instead of trial.done when the trial was cut short (stop, scancel, an
                       error mid-trial): why; no verdict, its raw files stay `*.partial`
    attempts/N/        earlier attempts of the trial, each the whole directory it left

While a trial runs, samples and intervals go to `*.partial` files that `finish` renames; every
other file is written to a temporary name and renamed, so a crash never leaves a half-written
file under a final name.

The trial directory holds its newest attempt. Opening a trial again (a re-run of the session
measures every trial whose newest attempt did not pass: failed, cut, or interrupted without
any marker) first moves what the earlier attempt left into attempts/N/ (N = 1, 2, ...; moved
entry by entry into attempts/.N.moving, then renamed, so an interrupted move is finished by
the next one), then starts afresh. A passed trial is never opened again (`passed_trials`).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import yaml

from hpcbench.common.errors import config_error
from hpcbench.common.files import write_atomic
from hpcbench.common.measure.histogram import Histogram
from hpcbench.common.measure.interval_log import IntervalLogWriter
from hpcbench.coordinator.ingest.aggregator import TrialSummary
from hpcbench.coordinator.session import verdicts
from hpcbench.proto.samples import SampleBatch, SampleBatchError, from_message

RECIPE = "recipe.yaml"
SAMPLES = "samples.msgpack"
HISTOGRAMS = "histograms.hlog"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
LOGS = "logs"
DONE = "trial.done"
STOPPED = "trial.stopped"
ATTEMPTS = "attempts"
PARTIAL = ".partial"
NODE_SAMPLES = "node_samples"
_COPY_CHUNK = 8 * 1024 * 1024
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}$")


class TrialFinishedError(RuntimeError):
    """A finished trial was opened for writing: finished trials are never rewritten."""


def _checked_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise config_error(f"{kind} {name!r} cannot name a results directory; use letters, "
                           "digits and . _ = + - (no slashes, at most 200 characters)")
    return name


def finished_trials(session_dir: Path) -> set[str]:
    """Ids of the trials of a session whose newest attempt finished (has trial.done), passed
    or failed."""
    session_dir = Path(session_dir)
    if not session_dir.is_dir():
        return set()
    return {entry.name for entry in session_dir.iterdir() if (entry / DONE).is_file()}


def passed_trials(session_dir: Path) -> set[str]:
    """Ids of the trials whose newest attempt passed: the only ones a re-run skips."""
    session_dir = Path(session_dir)
    if not session_dir.is_dir():
        return set()
    return {entry.name for entry in session_dir.iterdir()
            if entry.is_dir() and (entry / DONE).is_file()
            and (read_outcome(entry) or {}).get("verdict") == verdicts.PASSED}


def read_outcome(attempt_dir: Path) -> dict | None:
    """How an attempt (a trial directory or one of its attempts/N) ended: its trial.done
    record with the verdict, or {"verdict": "cut", "reason": ...} when it was stopped mid-way
    (trial.stopped) or left without any marker (its coordinator was killed); None when the
    directory holds no attempt."""
    attempt_dir = Path(attempt_dir)
    try:
        if (attempt_dir / DONE).is_file():
            record = json.loads((attempt_dir / DONE).read_text())
            if "verdict" not in record:   # written before verdicts were stored
                record.update(_legacy_verdict(attempt_dir))
            return record
        if (attempt_dir / STOPPED).is_file():
            return {**json.loads((attempt_dir / STOPPED).read_text()), "verdict": verdicts.CUT}
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as error:
        return verdicts.verdict_record([f"its outcome cannot be read: {error}"], None)
    if not attempt_dir.is_dir() or not any(entry.name != ATTEMPTS
                                           for entry in attempt_dir.iterdir()):
        return None
    return {"verdict": verdicts.CUT,
            "reason": f"interrupted: neither {DONE} nor {STOPPED} (its coordinator ended "
                      "without closing the trial)"}


def _legacy_verdict(attempt_dir: Path) -> dict:
    recipe = yaml.safe_load((attempt_dir / RECIPE).read_text()) or {}
    threshold = (recipe.get("workload") or {}).get("error_threshold")
    return verdicts.judge_legacy(read_summary(attempt_dir), threshold)


def trial_attempts(trial_dir: Path) -> list[dict]:
    """Every attempt of a trial, oldest first: its outcome (read_outcome), `attempt` (its
    number) and `directory` (attempts/N, or the trial directory for the newest)."""
    trial_dir = Path(trial_dir)
    attempts = []
    for number, directory in _numbered_attempts(trial_dir):
        outcome = read_outcome(directory) or {"verdict": verdicts.CUT, "reason": "empty"}
        attempts.append({**outcome, "attempt": number, "directory": directory})
    current = read_outcome(trial_dir)
    if current is not None:
        number = attempts[-1]["attempt"] + 1 if attempts else 1
        attempts.append({**current, "attempt": current.get("attempt") or number,
                         "directory": trial_dir})
    return attempts


def _numbered_attempts(trial_dir: Path) -> list[tuple[int, Path]]:
    folder = trial_dir / ATTEMPTS
    if not folder.is_dir():
        return []
    return sorted((int(entry.name), entry) for entry in folder.iterdir()
                  if entry.is_dir() and entry.name.isdigit())


def archive_attempt(trial_dir: Path) -> int:
    """Move what an earlier attempt left in `trial_dir` into attempts/N/; return the number
    of the trial's latest earlier attempt now (0: none). Its markers go first, so a half-moved attempt never
    looks finished; an interrupted move (attempts/.N.moving) is completed under the same N."""
    trial_dir = Path(trial_dir)
    folder = trial_dir / ATTEMPTS
    numbered = [number for number, _ in _numbered_attempts(trial_dir)]
    moving = sorted(folder.glob(".*.moving")) if folder.is_dir() else []
    left = [entry for entry in trial_dir.iterdir() if entry.name != ATTEMPTS] \
        if trial_dir.is_dir() else []
    if not left and not moving:
        return max(numbered, default=0)
    number = int(moving[0].name.split(".")[1]) if moving else max(numbered, default=0) + 1
    staging = folder / f".{number}.moving"
    staging.mkdir(parents=True, exist_ok=True)
    for entry in sorted(left, key=lambda entry: entry.name not in (DONE, STOPPED)):
        os.replace(entry, staging / entry.name)
    os.replace(staging, folder / str(number))
    _fsync_directory(folder)
    _fsync_directory(trial_dir)
    return number


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_samples(path: Path) -> Iterator[SampleBatch]:
    """The batches of a samples.msgpack file, in the order they were received."""
    with open(path, "rb") as source:
        unpacker = msgpack.Unpacker(source, raw=False, max_bin_len=1 << 30,
                                    max_str_len=1 << 16)
        for message in unpacker:
            yield from_message(message)
        # msgpack stops quietly before an incomplete last batch: that would lose samples
        if unpacker.tell() != os.fstat(source.fileno()).st_size:
            raise SampleBatchError(f"{path} ends in a truncated batch after byte "
                                   f"{unpacker.tell()}: the file is damaged")


class ResultsWriter:
    """The results of one session: <results_dir>/<scenario>/<session>/."""

    def __init__(self, results_dir: Path, scenario: str, session: str):
        self.session_dir = Path(results_dir) / _checked_name("scenario", scenario) \
            / _checked_name("session", session)

    def open_trial(self, trial_id: str, recipe: dict,
                   session_run: int | None = None) -> TrialWriter:
        """Start a new attempt of a trial (an earlier failed or cut one moves to attempts/N);
        TrialFinishedError if the trial passed. `session_run`: which run of the session
        measures it, recorded in its outcome."""
        return TrialWriter(self.session_dir / _checked_name("trial", trial_id), recipe,
                           session_run=session_run)


class TrialWriter:
    """Writes one attempt of a trial into its directory; it is the aggregator's sink for it."""

    def __init__(self, trial_dir: Path, recipe: dict, session_run: int | None = None):
        self.trial_dir = Path(trial_dir)
        if (self.trial_dir / DONE).exists() and \
                (read_outcome(self.trial_dir) or {}).get("verdict") == verdicts.PASSED:
            raise TrialFinishedError(f"trial {self.trial_dir} passed (trial.done exists) and is "
                                     "never rewritten; use a new session id to rerun it")
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        # a failed or cut earlier attempt is kept whole in attempts/N; this one starts afresh
        self.attempt = archive_attempt(self.trial_dir) + 1
        self.session_run = session_run
        self.logs_dir = self.trial_dir / LOGS
        self.logs_dir.mkdir()
        write_atomic(self.trial_dir / RECIPE, yaml.safe_dump(recipe, sort_keys=False))
        self._samples = open(self.trial_dir / (SAMPLES + PARTIAL), "ab")
        self._hlog = open(self.trial_dir / (HISTOGRAMS + PARTIAL), "w", encoding="ascii")
        self._log = IntervalLogWriter(self._hlog, time.time())
        self.finished = False

    # -- the aggregator's sink ------------------------------------------------------------------
    def append_batch(self, payload: bytes) -> None:
        self._samples.write(payload)

    def append_interval(self, start_time_s: float, length_s: float,
                        histograms: dict[str, Histogram]) -> None:
        for metric, histogram in histograms.items():
            if histogram.count:
                self._log.write(metric, start_time_s, length_s, histogram)

    def raw_file_for(self, executor: str) -> Path:
        """Where `executor` keeps this trial's raw batches in histogram mode (it writes
        <path>.partial and renames it when complete)."""
        folder = self.trial_dir / NODE_SAMPLES
        folder.mkdir(exist_ok=True)
        return folder / f"{_checked_name('executor', executor)}.msgpack"

    def gather_executor_samples(self, executors) -> dict[str, str]:
        """Append each executor's complete raw file to samples.msgpack (then remove it), so
        exact statistics, exports and reports read one file as in raw mode; returns the
        executors whose file is not there complete, with what was found. Incomplete files
        stay in node_samples/ for inspection."""
        folder = self.trial_dir / NODE_SAMPLES
        missing = {}
        for executor in sorted(executors):
            path = self.raw_file_for(executor)
            if not path.is_file():
                partial = path.with_name(path.name + PARTIAL)
                missing[executor] = (f"{partial} was left incomplete" if partial.exists()
                                     else f"{path} was never written")
                continue
            with open(path, "rb") as source:
                while chunk := source.read(_COPY_CHUNK):
                    self._samples.write(chunk)
        self._samples.flush()
        os.fsync(self._samples.fileno())
        for executor in executors:
            if executor not in missing:
                self.raw_file_for(executor).unlink()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        return missing

    def read_batches(self) -> Iterator[SampleBatch]:
        """The batches appended so far (or, once finished, all of them)."""
        if not self.finished:
            self._samples.flush()
            return read_samples(self.trial_dir / (SAMPLES + PARTIAL))
        return read_samples(self.trial_dir / SAMPLES)

    # -- completion -----------------------------------------------------------------------------
    def finish(self, summary: TrialSummary, verdict: dict | None = None) -> Path:
        """Move the raw files into place, write the summaries, then trial.done with the
        trial's `verdict` (verdicts.decide; none given is recorded as a failed one: only a
        decided verdict passes). Returns the trial directory."""
        if self.finished:
            raise TrialFinishedError(f"trial {self.trial_dir} is already finished")
        for handle, name in ((self._samples, SAMPLES), (self._hlog, HISTOGRAMS)):
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(self.trial_dir / (name + PARTIAL), self.trial_dir / name)
        document = summary.to_dict()
        document["histograms"] = {metric: histogram.encode()
                                  for metric, histogram in summary.histograms.items()}
        write_atomic(self.trial_dir / SUMMARY_JSON, json.dumps(document, indent=2) + "\n")
        write_atomic(self.trial_dir / SUMMARY_CSV, _csv(summary.csv_rows()))
        if verdict is None:
            verdict = verdicts.verdict_record(["no verdict was decided for it"], None)
        write_atomic(self.trial_dir / DONE, json.dumps({
            "trial": summary.trial, "run": summary.run, "attempt": self.attempt,
            "session_run": self.session_run, "finished_ns": time.time_ns(),
            "requests": summary.requests, **verdict}) + "\n")
        self.finished = True
        return self.trial_dir

    def abort(self, reason: str = "") -> None:
        """Close the files of an attempt that will not finish and write trial.stopped with
        `reason`: it has no verdict, its partial files stay as they are, and a re-run of the
        session moves them to attempts/N before measuring the trial again."""
        for handle in (self._samples, self._hlog):
            if not handle.closed:
                handle.close()
        if not self.finished and not any((self.trial_dir / marker).exists()
                                         for marker in (DONE, STOPPED)):
            write_atomic(self.trial_dir / STOPPED, json.dumps({
                "trial": self.trial_dir.name, "attempt": self.attempt,
                "session_run": self.session_run, "stopped_ns": time.time_ns(),
                "reason": reason or "stopped before it finished"}) + "\n")


def _csv(rows: list[dict]) -> str:
    text = io.StringIO()
    if rows:
        writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return text.getvalue()


def read_summary(trial_dir: Path) -> dict:
    """summary.json of a finished trial."""
    return json.loads((Path(trial_dir) / SUMMARY_JSON).read_text())
