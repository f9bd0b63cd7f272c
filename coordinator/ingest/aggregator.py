"""The aggregator: sample batches in, HDR percentiles and rates out, per interval and cumulative.

For each trial it keeps one `MetricSet` (hpcbench.common.measure.statistics: a histogram per
metric plus request, token, error and goodput counters) per scope: global and per executor,
each as an interval set (since the last snapshot) and a cumulative set. A batch's metric values
(hpcbench.common.measure.definitions) are turned into bucket counts once and added to its
executor's and the global interval set; `snapshot()` reports the interval, folds it into the
cumulative set and starts the next interval.

Integrity (DESIGN.md section 8, no silent loss): per (run, executor) sequence numbers are
tracked; a duplicate batch is counted and ignored, a gap is counted until the missing batch
arrives late; undecodable batches, batches of another run and batches of a closed trial are
counted with the reason. `integrity` in every snapshot and summary reports them all.

Thread-safe: the ingest thread, the snapshot timer and the session (open/close trial) share one
lock. Accepted batches go, unchanged, to the trial's sink (the results writer) for lossless
storage, so `close_trial` can recompute exact percentiles from the raw samples.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator, Protocol

import msgpack
import numpy as np

from hpcbench.common.measure import definitions
from hpcbench.common.measure.buckets import HistogramConfig
from hpcbench.common.measure.conversations import ConversationRows
from hpcbench.common.measure.histogram import Histogram, Recording
from hpcbench.common.measure.statistics import Scope, exact_stats, latency_buckets
from hpcbench.coordinator.ingest.sequences import SequenceTracker
from hpcbench.proto import samples
from hpcbench.proto.samples import SampleBatch, SampleBatchError

_RECENT_PROBLEMS = 20


class TrialSink(Protocol):
    """Where a trial's accepted batches and interval histograms go (results.TrialWriter)."""

    def append_batch(self, payload: bytes) -> None: ...

    def append_interval(self, start_time_s: float, length_s: float,
                        histograms: dict[str, Histogram]) -> None: ...

    def read_batches(self) -> Iterator[SampleBatch]: ...


@dataclass
class Trial:
    """Everything the aggregator holds for one trial."""

    trial_id: str
    slos_ns: dict[str, int]
    sink: TrialSink | None
    whole: Scope
    executors: dict[str, Scope] = field(default_factory=dict)
    # executors lost during the trial -> when (wall ns): from then on its intervals lack their
    # share of the load, so they are reported partial
    missing_executors: dict[str, int] = field(default_factory=dict)


@dataclass
class TrialSummary:
    """A finished trial: cumulative statistics (HDR) beside exact ones from the raw samples."""

    run: str
    trial: str
    slos_s: dict[str, float]
    overall: dict                        # MetricSet.stats of the measured window
    executors: dict[str, dict]           # per executor, same shape
    exact: dict[str, dict] | None        # metric -> exact_stats, None without raw samples
    integrity: dict
    histograms: dict[str, Histogram]     # cumulative global histograms (for .hlog and reports)
    # the measured window in wall-clock ns (first intended send .. last end), None if empty:
    # what telemetry-based figures such as the trial's energy are taken over
    window_start_ns: int | None = None
    window_end_ns: int | None = None
    energy: dict | None = None           # joules, output_tokens_per_joule, ... (GPU runs)
    server: dict | None = None           # the server's own /metrics over the window, if scraped
    # multi-turn trials: per turn index and per conversation (common/measure/conversations.py)
    conversations: dict | None = None

    @property
    def requests(self) -> int:
        return self.overall["requests"]

    @property
    def error_total(self) -> int:
        return self.overall["error_total"]

    @property
    def error_rate(self) -> float:
        """Failed share of measured requests (compare with the recipe's error_threshold)."""
        return self.error_total / self.requests if self.requests else 0.0

    def to_dict(self) -> dict:
        document = {"run": self.run, "trial": self.trial, "slos_s": self.slos_s,
                    "latency_unit": "ms", "overall": self.overall,
                    "executors": self.executors, "exact": self.exact,
                    "integrity": self.integrity,
                    "window": {"start_ns": self.window_start_ns, "end_ns": self.window_end_ns}}
        if self.energy is not None:
            document["energy"] = self.energy
        if self.server is not None:
            document["server"] = self.server
        if self.conversations is not None:
            document["conversations"] = self.conversations
        return document

    def csv_rows(self) -> list[dict]:
        """One row per metric and source (hdr, exact) with throughput columns repeated."""
        common = {"run": self.run, "trial": self.trial,
                  **{key: self.overall[key] for key in (
                      "requests", "ok", "error_total", "seconds", "req_per_s",
                      "output_tokens_per_s", "total_tokens_per_s", "goodput_req_per_s")}}
        rows = []
        for metric in definitions.METRICS:
            sources = [("hdr", self.overall["latency"][metric])]
            if self.exact is not None:
                sources.append(("exact", self.exact[metric]))
            for source, stats in sources:
                rows.append({**common, "metric": metric, "source": source, "unit": "ms",
                             **stats})
        return rows


class Aggregator:
    """Ingest sample batches of one run; snapshots every interval; summaries per trial."""

    def __init__(self, config: HistogramConfig | None = None, run_id: str = "",
                 interval_s: float = 1.0,
                 queue_threshold_ns: int = definitions.DEFAULT_QUEUE_THRESHOLD_NS,
                 admitted_only: bool = False):
        """`admitted_only` (a session's aggregator): take batches only of trials opened with
        `open_trial` and of executors admitted with `admit_executors`; anything else is
        counted as foreign and dropped before it creates any state, so no input can grow the
        aggregator. Without it (tools, benches) every trial and executor is taken."""
        self.config = config or HistogramConfig()
        self.run_id = run_id
        self.admitted_only = admitted_only
        self._admitted: set[str] = set()
        self.interval_s = interval_s
        self.queue_threshold_ns = queue_threshold_ns
        self._lock = threading.Lock()
        self._trials: dict[str, Trial] = {}
        self._closed: set[str] = set()
        self._sequences: dict[str, SequenceTracker] = {}
        self.current_trial: str | None = None
        self.batches = self.samples = self.malformed = self.wrong_run = 0
        self.foreign = self.foreign_requests = 0
        self.after_close = self.after_close_requests = 0
        self.unstored_batches = self.unstored_requests = self.unwritten_intervals = 0
        self.problems: deque[str] = deque(maxlen=_RECENT_PROBLEMS)
        self._snapshot_seq = 0
        self._interval_started = time.time()

    # -- trials ---------------------------------------------------------------------------------
    def open_trial(self, trial_id: str, slos_s: dict[str, float] | None = None,
                   sink: TrialSink | None = None) -> None:
        """Prepare a trial: its SLOs (seconds, for goodput) and where its raw batches go.

        Batches of a trial never opened are aggregated too (no SLOs, no sink)."""
        slos_ns = definitions.slos_to_ns(slos_s)
        with self._lock:
            self._closed.discard(trial_id)
            self._trials[trial_id] = Trial(trial_id, slos_ns, sink, Scope(self.config))
            self.current_trial = trial_id

    def admit_executors(self, executors) -> None:
        """Executors whose batches count (the session's registered ones)."""
        with self._lock:
            self._admitted.update(executors)

    def mark_executor_missing(self, trial_id: str, executor: str) -> None:
        """`executor` was lost during `trial_id`: its later intervals are partial."""
        with self._lock:
            self._trial(trial_id).missing_executors.setdefault(executor, time.time_ns())

    def _trial(self, trial_id: str) -> Trial:
        trial = self._trials.get(trial_id)
        if trial is None:
            trial = self._trials[trial_id] = Trial(trial_id, {}, None, Scope(self.config))
        return trial

    # -- ingest ---------------------------------------------------------------------------------
    def ingest(self, item: bytes | SampleBatch) -> bool:
        """Take one batch (wire bytes or decoded); True if accepted. Never raises on bad input:
        malformed, duplicate, foreign and too-late batches are counted and reported."""
        if isinstance(item, SampleBatch):
            try:
                payload = samples.encode(item)  # checks column lengths; stored losslessly
                if len(item.itl_ns) != int(item.itl_offsets()[-1]):
                    raise SampleBatchError(f"itl_ns has {len(item.itl_ns)} gaps, chunks say "
                                           f"{int(item.itl_offsets()[-1])}")
            except (SampleBatchError, KeyError, TypeError, ValueError) as error:
                self.reject_malformed(str(error))
                return False
            return self._ingest_batch(item, payload)
        try:
            message = msgpack.unpackb(item, raw=False, max_bin_len=1 << 30, max_str_len=1 << 16)
        except Exception as error:  # msgpack raises several unrelated types on garbage
            self.reject_malformed(f"not a msgpack message: {error}")
            return False
        return self.ingest_message(message, item)

    def ingest_message(self, message: object, payload: bytes) -> bool:
        """Take an already unpacked batch (the server peeks at `kind` first) and its bytes."""
        try:
            batch = samples.from_message(message)
        except SampleBatchError as error:
            self.reject_malformed(str(error))
            return False
        return self._ingest_batch(batch, payload)

    def reject_malformed(self, reason: str) -> None:
        with self._lock:
            self.malformed += 1
            self.problems.append(f"malformed batch: {reason}")

    def _ingest_batch(self, batch: SampleBatch, payload: bytes) -> bool:
        with self._lock:
            if self.run_id and batch.run != self.run_id:
                self.wrong_run += 1
                self.problems.append(f"batch of run {batch.run!r} ignored (this run is "
                                     f"{self.run_id!r}), executor {batch.executor!r}")
                return False
            if self.admitted_only and (batch.executor not in self._admitted or (
                    batch.trial not in self._trials and batch.trial not in self._closed)):
                self.foreign += 1
                self.foreign_requests += batch.n
                self.problems.append(f"batch of executor {batch.executor[:64]!r} for trial "
                                     f"{batch.trial[:64]!r} dropped: not an executor and trial "
                                     "of this session")
                return False
            if batch.trial in self._closed:
                self.after_close += 1
                self.after_close_requests += batch.n
                self.problems.append(f"batch seq {batch.seq} of executor {batch.executor!r} "
                                     f"arrived after trial {batch.trial!r} closed: not in results")
                return False
            tracker = self._sequences.setdefault(batch.executor, SequenceTracker())
            if not tracker.accept(batch.seq):
                self.problems.append(f"duplicate batch seq {batch.seq} of executor "
                                     f"{batch.executor!r} ignored")
                return False
            trial = self._trial(batch.trial)
            self.current_trial = batch.trial
            derived = definitions.derive(batch, trial.slos_ns, self.queue_threshold_ns)
            recordings = {name: Recording.of(self.config, values)
                          for name, values in derived.values.items() if len(values)}
            executor = trial.executors.get(batch.executor)
            if executor is None:
                executor = trial.executors[batch.executor] = Scope(self.config)
            executor.interval.add(derived, recordings)
            trial.whole.interval.add(derived, recordings)
            self.batches += 1
            self.samples += batch.n + len(batch.itl_ns)
            if trial.sink is not None:
                try:
                    trial.sink.append_batch(payload)
                except OSError as error:  # e.g. disk full: live statistics go on, loss is told
                    self.unstored_batches += 1
                    self.unstored_requests += batch.n
                    self.problems.append(f"raw samples of batch seq {batch.seq} of executor "
                                         f"{batch.executor!r} not stored: {error}")
            return True

    def batches_received(self, executor: str) -> int:
        """Distinct batches received from `executor` (a session waits for an executor's count
        of sent batches before closing a trial)."""
        with self._lock:
            tracker = self._sequences.get(executor)
            return 0 if tracker is None else tracker.next_seq - tracker.gaps

    # -- reporting ------------------------------------------------------------------------------
    def integrity(self) -> dict:
        """Counts of everything that did not go into the results normally, with reasons."""
        return {
            "batches": self.batches, "samples": self.samples,
            "malformed_batches": self.malformed, "wrong_run_batches": self.wrong_run,
            "foreign_batches": self.foreign, "foreign_requests": self.foreign_requests,
            "after_close_batches": self.after_close,
            "after_close_requests": self.after_close_requests,
            "unstored_batches": self.unstored_batches,
            "unstored_requests": self.unstored_requests,
            "unwritten_intervals": self.unwritten_intervals,
            "duplicate_batches": sum(t.duplicates for t in self._sequences.values()),
            "missing_batches": sum(t.gaps for t in self._sequences.values()),
            "late_batches": sum(t.late for t in self._sequences.values()),
            "missing_by_executor": {name: tracker.gaps for name, tracker in
                                    self._sequences.items() if tracker.gaps},
            "recent_problems": list(self.problems),
        }

    def snapshot(self) -> dict:
        """Statistics of the interval since the last snapshot and cumulative ones of the current
        trial; then the next interval starts. Call it every `interval_s`."""
        with self._lock:
            now = time.time()
            seconds = max(now - self._interval_started, 1e-9)
            started, self._interval_started = self._interval_started, now
            report = {"run": self.run_id, "seq": self._snapshot_seq, "ts_ns": time.time_ns(),
                      "interval_s": seconds, "trial": self.current_trial, "latency_unit": "ms",
                      "interval": None, "cumulative": None, "executors": {},
                      "partial": False, "missing_executors": []}
            self._snapshot_seq += 1
            for trial in self._trials.values():
                self._write_interval(trial, started, seconds)
                if trial.trial_id == self.current_trial:
                    report.update(self._report_and_fold(trial, seconds))
                else:
                    for scope in (trial.whole, *trial.executors.values()):
                        scope.fold()
            report["integrity"] = self.integrity()
            return report

    @staticmethod
    def _report_and_fold(trial: Trial, seconds: float) -> dict:
        """Interval and cumulative statistics of a trial, globally and per executor (the global
        cumulative ones with fixed latency buckets for Prometheus). With a single executor its
        statistics are the global ones: computed once."""
        goodput = bool(trial.slos_ns)
        single = len(trial.executors) == 1
        scopes = {None: trial.whole, **({} if single else trial.executors)}
        interval = {name: scope.interval.stats(seconds, goodput) for name, scope in scopes.items()}
        for scope in (trial.whole, *trial.executors.values()):
            scope.fold()
        cumulative = {name: scope.cumulative.stats(scope.cumulative.window_s, goodput)
                      for name, scope in scopes.items()}
        return {"partial": bool(trial.missing_executors),
                "missing_executors": sorted(trial.missing_executors),
                "interval": interval[None],
                "cumulative": {**cumulative[None],
                               "latency_buckets": latency_buckets(trial.whole.cumulative)},
                "executors": {name: {"interval": interval[None if single else name],
                                     "cumulative": cumulative[None if single else name]}
                              for name in trial.executors}}

    def close_trial(self, trial_id: str) -> TrialSummary:
        """Finish a trial: fold its last interval, recompute exact percentiles from its sink's
        raw samples, and forget it (later batches of it are counted as after_close)."""
        with self._lock:
            trial = self._trial(trial_id)
            del self._trials[trial_id]
            self._closed.add(trial_id)
            if self.current_trial == trial_id:
                self.current_trial = None
            self._write_interval(trial, self._interval_started,
                                 time.time() - self._interval_started)
            for scope in (trial.whole, *trial.executors.values()):
                scope.fold()
            integrity = self.integrity()
            integrity["missing_executors_since_ns"] = dict(trial.missing_executors)
        goodput = bool(trial.slos_ns)
        cumulative = trial.whole.cumulative
        exact, conversations = self._exact(trial) if trial.sink is not None else (None, None)
        return TrialSummary(
            run=self.run_id, trial=trial_id,
            slos_s={name: value / 1e9 for name, value in trial.slos_ns.items()},
            overall=cumulative.stats(cumulative.window_s, goodput),
            executors={name: scope.cumulative.stats(scope.cumulative.window_s, goodput)
                       for name, scope in trial.executors.items()},
            exact=exact, integrity=integrity, histograms=cumulative.histograms,
            window_start_ns=cumulative.first_ns, window_end_ns=cumulative.last_ns,
            conversations=conversations)

    def _write_interval(self, trial: Trial, start_time_s: float, length_s: float) -> None:
        """The trial's global interval histograms into its interval log (if it has a sink)."""
        if trial.sink is None or not trial.whole.interval.requests:
            return
        try:
            trial.sink.append_interval(start_time_s, length_s, trial.whole.interval.histograms)
        except OSError as error:
            self.unwritten_intervals += 1
            self.problems.append(f"interval log of trial {trial.trial_id!r} not written: {error}")

    def _exact(self, trial: Trial) -> tuple[dict[str, dict] | None, dict | None]:
        """Exact statistics per metric from the raw batches the sink stored, and the
        conversation metrics of a multi-turn trial (None without conversations); both None,
        with the reason among the problems, when the batches cannot be read back."""
        collected: dict[str, list[np.ndarray]] = {name: [] for name in definitions.METRICS}
        conversations = ConversationRows()
        try:
            for batch in trial.sink.read_batches():
                derived = definitions.derive(batch, trial.slos_ns, self.queue_threshold_ns)
                for name, values in derived.values.items():
                    collected[name].append(values)
                conversations.add(batch)
        except (OSError, ValueError) as error:  # ValueError: msgpack's and the contract's
            self.problems.append(f"raw samples of trial {trial.trial_id!r} unreadable, no "
                                 f"exact statistics: {error}")
            return None, None
        return ({name: exact_stats(np.concatenate(parts) if parts else np.zeros(0, np.int64))
                 for name, parts in collected.items()}, conversations.metrics())
