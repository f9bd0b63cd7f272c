"""Results on disk: one directory per trial, written atomically, never rewritten once finished.

Layout: <results>/<scenario>/<session>/<trial>/
    recipe.yaml        the trial's resolved recipe
    samples.msgpack    every accepted sample batch, byte for byte as received, concatenated
                       (msgpack maps of proto/samples.py; `read_samples` iterates them): lossless
    histograms.hlog    HdrHistogram interval log (format 1.3), one line per interval and metric,
                       Tag=<metric>, values in ns (Interval_Max in ms); HistogramLogProcessor and
                       the Python `hdrhistogram` package read it
    summary.json       TrialSummary: counts, rates, goodput, errors by class, HDR statistics
                       beside exact ones from the raw samples, integrity counters, and the
                       cumulative histogram of each metric (base64 V2, for later merging)
    summary.csv        one row per metric and source (hdr, exact): count, mean, min, p50, p90,
                       p95, p99, p99.9, max in ms, with the trial's throughput columns
    logs/              component logs of the trial
    trial.done         written last; a trial with it is finished and never rewritten

While a trial runs, samples and intervals go to `*.partial` files that `finish` renames; every
other file is written to a temporary name and renamed, so a crash never leaves a half-written
file under a final name. A trial without trial.done is unfinished: opening it again starts it
afresh, which is how a re-run of a session resumes its sweep (`finished_trials`).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
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
from hpcbench.proto.samples import SampleBatch, SampleBatchError, from_message

RECIPE = "recipe.yaml"
SAMPLES = "samples.msgpack"
HISTOGRAMS = "histograms.hlog"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
LOGS = "logs"
DONE = "trial.done"
PARTIAL = ".partial"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}$")


class TrialFinishedError(RuntimeError):
    """A finished trial was opened for writing: finished trials are never rewritten."""


def _checked_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise config_error(f"{kind} {name!r} cannot name a results directory; use letters, "
                           "digits and . _ = + - (no slashes, at most 200 characters)")
    return name


def finished_trials(session_dir: Path) -> set[str]:
    """Ids of the trials of a session that are finished (have trial.done): skip them on re-run."""
    session_dir = Path(session_dir)
    if not session_dir.is_dir():
        return set()
    return {entry.name for entry in session_dir.iterdir() if (entry / DONE).is_file()}


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

    def finished_trials(self) -> set[str]:
        return finished_trials(self.session_dir)

    def open_trial(self, trial_id: str, recipe: dict) -> TrialWriter:
        """Start writing a trial; TrialFinishedError if it is already finished."""
        return TrialWriter(self.session_dir / _checked_name("trial", trial_id), recipe)


class TrialWriter:
    """Writes one trial directory; it is the aggregator's sink for that trial."""

    def __init__(self, trial_dir: Path, recipe: dict):
        self.trial_dir = Path(trial_dir)
        if (self.trial_dir / DONE).exists():
            raise TrialFinishedError(f"trial {self.trial_dir} is finished (trial.done exists) "
                                     "and is never rewritten; use a new session id to rerun it")
        self.trial_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir = self.trial_dir / LOGS
        # an interrupted earlier attempt may have left files: this attempt starts afresh
        shutil.rmtree(self.logs_dir, ignore_errors=True)
        self.logs_dir.mkdir()
        for stale in (SAMPLES, HISTOGRAMS, SUMMARY_JSON, SUMMARY_CSV):
            for path in (self.trial_dir / stale, self.trial_dir / (stale + PARTIAL)):
                path.unlink(missing_ok=True)
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

    def read_batches(self) -> Iterator[SampleBatch]:
        """The batches appended so far (or, once finished, all of them)."""
        if not self.finished:
            self._samples.flush()
            return read_samples(self.trial_dir / (SAMPLES + PARTIAL))
        return read_samples(self.trial_dir / SAMPLES)

    # -- completion -----------------------------------------------------------------------------
    def finish(self, summary: TrialSummary) -> Path:
        """Move the raw files into place, write the summaries, then trial.done. Returns the
        trial directory."""
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
        write_atomic(self.trial_dir / DONE, json.dumps({
            "trial": summary.trial, "run": summary.run, "finished_ns": time.time_ns(),
            "requests": summary.requests}) + "\n")
        self.finished = True
        return self.trial_dir

    def abort(self) -> None:
        """Close the files of a trial that will not finish; it stays unfinished (no trial.done),
        its partial files remain for inspection until the trial is opened again."""
        for handle in (self._samples, self._hlog):
            if not handle.closed:
                handle.close()


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
