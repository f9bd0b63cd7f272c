"""What a session records: samples in (the ingest plane), the bus out, results on disk.

The session drives it trial by trial: `begin_trial` opens the trial's results directory as the
aggregator's sink; `finish_trial` waits until the aggregator holds every batch the executors
reported sending (nothing silently lost), closes the trial (exact percentiles beside HDR ones),
decides the trial's verdict once (verdicts.py: error threshold, batches that never arrived,
integrity counters, lost executors) and writes summary.json/summary.csv and trial.done with
it. Lifecycle events and snapshots go out on the bus; snapshots also feed gRPC Watch.
The monitors' telemetry feeds an `EnergyMeter`, so a trial on GPUs gets its energy (joules and
output tokens per joule over its measured window) in summary.json, and a `ServerMetricsLog`, so
a trial whose server was scraped gets the server's own view (server_view.py):
server_metrics.csv beside its samples and `server` in summary.json.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from hpcbench.common.curve import KEYS_FILE, create_keys
from hpcbench.common.files import write_atomic
from hpcbench.coordinator.bus.publisher import BusPublisher
from hpcbench.coordinator.ingest.aggregator import Aggregator
from hpcbench.coordinator.ingest.receiver import AggregatorServer
from hpcbench.coordinator.session import server_view, session_file, verdicts
from hpcbench.coordinator.session.results import (
    ResultsWriter,
    passed_trials,
    read_outcome,
    read_summary,
)
from hpcbench.coordinator.session.sample_mode import aggregation_mode
from hpcbench.coordinator.session.session_file import SESSION_FILE
from hpcbench.monitor.energy import EnergyMeter
from hpcbench.monitor.server_view import ServerMetricsLog
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.proto.bus import Event, event_data
from hpcbench.proto.trial import HISTOGRAMS, RAW

BATCH_ARRIVAL_TIMEOUT_S = 15.0   # after the last report, for queued batches to arrive


class SessionRecording:
    """The ingest receiver, aggregator, bus publisher, Prometheus endpoint and results writer
    of one session, driven trial by trial."""

    def __init__(self, recipe, session_id: str, session_dir: Path, host: str, *,
                 single_machine: bool, control_tls: bool, on_snapshot=None,
                 interval_s: float = 1.0):
        """`host`: the address executors and monitors reach this node by; tcp sockets listen
        there, or on the recipe's security.bind_address (e.g. 0.0.0.0) when it sets one.
        `single_machine`: every component runs here (the local launcher), so the sockets can
        be ipc:// files only this user reaches (see `data_plane_protection`). `control_tls`:
        whether the control port speaks TLS; both go into every summary.json."""
        self.recipe = recipe
        self.session_id = session_id
        self.session_dir = Path(session_dir)
        security = recipe.data["security"]
        self.protection = data_plane_protection(security, single_machine)
        bind = security["bind_address"] or host
        self._socket_dir: Path | None = None
        if self.protection == "ipc":
            self._socket_dir = Path(tempfile.mkdtemp(prefix="hpcbench-"))   # 0700, random
            sample_bind, bus_bind = (f"ipc://{self._socket_dir}/{name}" for name in ("samples", "bus"))
        else:
            sample_bind = bus_bind = f"tcp://{bind}:0"
        self.curve = create_keys(self.session_dir) if self.protection == "curve" else None
        self.curve_file = self.session_dir / KEYS_FILE if self.curve is not None else None
        self.protections = {"data_plane": self.protection,
                            "control_plane": "tls" if control_tls else "loopback",
                            "control_token": "required"}
        self.aggregator = Aggregator(run_id=session_id, interval_s=interval_s, admitted_only=True)
        self.energy = EnergyMeter()
        self.server_metrics = ServerMetricsLog()
        self._telemetry_nodes: set[str] = set()   # nodes whose monitor has reported
        self._telemetry_lock = threading.Lock()
        self.bus = self.server = None
        try:   # whatever fails half way leaves no socket, thread or directory behind
            self.bus = BusPublisher(bus_bind, run=session_id, curve=self.curve)
            self.server = AggregatorServer(self.aggregator, sample_bind, bus=self.bus,
                                           on_snapshot=on_snapshot, on_telemetry=self._telemetry,
                                           curve=self.curve)
            self.sample_endpoint = reachable(self.server.start(), host)
            self.bus_endpoint = reachable(self.bus.endpoint, host)
            self.metrics_server = self._serve_prometheus(bind)
        except BaseException:
            if self.server is not None:
                self.server.stop()
            if self.bus is not None:
                self.bus.close()
            self._remove_socket_dir()
            raise
        self.results = ResultsWriter(self.session_dir.parent.parent, self.session_dir.parent.name,
                                     self.session_dir.name)
        self._trial_writer = None
        self._trial_id = ""
        self._aggregation: dict | None = None         # the running trial's sample mode
        self._node_sample_executors: list[str] = []   # its executors keeping raw rows
        self._expected_batches: dict[str, int] = {}   # executor -> batches sent, all trials
        self._missing_before: dict[str, int] = {}     # executor -> never arrived, earlier trials
        self._integrity_at_begin: dict = {}
        self._log_offsets: dict[Path, int] = {}
        self._ended: dict | None = None

    def _serve_prometheus(self, host: str):
        """The session's Prometheus endpoint (latency, throughput, errors, every node's
        telemetry) when the recipe enables monitoring.prometheus; its port goes to
        <session>/prometheus.port."""
        settings = self.recipe.data.get("monitoring", {}).get("prometheus") or {}
        if not settings.get("enabled"):
            return None
        from hpcbench.coordinator.bus.prometheus import SessionMetricsServer

        return SessionMetricsServer(self.bus_endpoint, host, settings["port"],
                                    self.session_dir / "prometheus.port",
                                    compat=settings.get("compat_names", "none"),
                                    service=self.recipe.data["workload"]["service"],
                                    curve=self.curve)

    def _telemetry(self, message: dict) -> None:
        """A checked telemetry message (ingest thread): note its node, meter its GPUs."""
        with self._telemetry_lock:
            self._telemetry_nodes.add(message["node"])
        self.energy.observe(message)
        self.server_metrics.observe(message)

    @property
    def telemetry_nodes(self) -> frozenset[str]:
        """The nodes whose monitor has sent telemetry so far."""
        with self._telemetry_lock:
            return frozenset(self._telemetry_nodes)

    def publish_event(self, event: Event, state: str, **fields) -> None:
        self.bus.event(event_data(event, self.session_id, state, **fields))

    def passed_trials(self) -> set[str]:
        """Trials whose newest attempt passed: a re-run skips them, and only them."""
        return passed_trials(self.session_dir)

    def begin_trial(self, trial, log_dir: Path, session_run: int | None = None) -> None:
        """Open a new attempt of `trial` (results.py keeps an earlier one in attempts/N)."""
        recipe = {**self.recipe.data, "workload": trial.workload,
                  "trial": {"id": trial.id, "index": trial.index,
                            "repetition": trial.repetition, "params": trial.params},
                  "session": self.session_id}
        self._trial_writer = self.results.open_trial(trial.id, recipe, session_run=session_run)
        self._trial_id = trial.id
        self._integrity_at_begin = self.aggregator.integrity()
        self.aggregator.open_trial(trial.id, trial.workload.get("slo") or {}, self._trial_writer)
        self._log_offsets = {path: path.stat().st_size for path in Path(log_dir).glob("*.log")}

    def choose_sample_mode(self, executors) -> dict:
        """Decide how the running trial's samples travel (`aggregation_mode`) for these
        executors; returns each executor's TrialConfig.samples."""
        executors = list(executors)
        self._aggregation = aggregation_mode(self.recipe.data["aggregation"], len(executors))
        self._node_sample_executors = executors if self._aggregation["mode"] == HISTOGRAMS \
            else []
        if self._node_sample_executors:
            # absolute, symlinks kept: the path the run directory is bound at in an executor's
            # container (launch/srun.py) is the one the coordinator uses, not its target
            return {executor: {"mode": HISTOGRAMS, "raw_file": os.path.abspath(
                        self._trial_writer.raw_file_for(executor))}
                    for executor in executors}
        return {executor: {"mode": RAW} for executor in executors}

    def trial_streams(self, trial_id: str, streams: int | None) -> None:
        """The closed-loop streams `trial_id` runs (None: open loop), for the Prometheus
        endpoint's reference names (the reference's `<service>_threads`)."""
        workload = self.metrics_server.collector.workload if self.metrics_server else None
        if workload is not None:
            workload.streams(trial_id, streams)

    def admit(self, executors=(), monitor_nodes=()) -> None:
        """The session's own executors and monitor nodes: only their batches and telemetry
        count; anything else reaching the sockets is counted as foreign and dropped."""
        self.aggregator.admit_executors(executors)
        if monitor_nodes:
            self.server.telemetry_nodes = set(self.server.telemetry_nodes or ()) | set(monitor_nodes)

    def mark_executor_lost(self, trial_id: str, agent_id: str) -> None:
        """An executor was lost while `trial_id` ran: its intervals are partial from now on."""
        self.aggregator.mark_executor_missing(trial_id, agent_id)

    def finish_trial(self, trial, reports: dict[str, pb.AgentReport], losses: dict[str, dict],
                     error_threshold: float, log_dir: Path, judge=None) -> dict:
        """Close the trial once every reported batch arrived; returns its result record.

        `losses`: executor -> what the session knows of one that sent no report (`reason`, and
        from its last heartbeat `recorded`, `in_flight`); absent ones were lost before.
        `judge(summary document, histograms, verdict)`: a capacity search's probe record
        (capacity.py), stored with the verdict in trial.done."""
        for agent_id, report in reports.items():
            self._expected_batches[agent_id] = (self._expected_batches.get(agent_id, 0)
                                                + report.batches_sent)
        missing = self._wait_for_batches(BATCH_ARRIVAL_TIMEOUT_S)
        if self._node_sample_executors:
            # the raw rows each executor kept on its node join samples.msgpack, so exact
            # statistics, exports and reports read them as in raw mode
            self.aggregator.raw_files_lost(trial.id, self._trial_writer.gather_executor_samples(
                self._node_sample_executors))
        aggregation, self._aggregation, self._node_sample_executors = self._aggregation, None, []
        summary = self.aggregator.close_trial(trial.id)
        summary.aggregation = aggregation
        # what each executor says it produced, beside what arrived: the audit of no silent
        # loss; and whether its token times are the kernel's receive stamps (docs/metrics.md,
        # "Timestamps")
        stats = {agent_id: json.loads(report.stats_json) if report.stats_json else {}
                 for agent_id, report in reports.items()}
        summary.integrity["executor_reports"] = {
            agent_id: {"batches_sent": report.batches_sent,
                       "requests": stats[agent_id].get("requests"),
                       "kernel_stamps": stats[agent_id].get("kernel_stamps")}
            for agent_id, report in reports.items()}
        summary.integrity["lost_executors"] = loss_accounts(summary, losses)
        summary.integrity["protection"] = self.protections
        summary.energy = self._trial_energy(summary)
        summary.server = self._trial_server(summary)
        self._copy_trial_logs(log_dir)
        document = summary.to_dict()
        # decided once, from everything known now, and stored in trial.done with the trial;
        # what never arrived is counted against the trial it went missing in
        new_missing = {agent: count - self._missing_before.get(agent, 0)
                       for agent, count in missing.items()
                       if count > self._missing_before.get(agent, 0)}
        self._missing_before = dict(missing)
        verdict = verdicts.decide(
            document["overall"], error_threshold, missing=new_missing,
            integrity_growth={key: summary.integrity.get(key, 0)
                              - self._integrity_at_begin.get(key, 0)
                              for key in ("missing_batches", "unstored_batches",
                                          "unwritten_intervals")},
            lost_executors=summary.integrity["lost_executors"])
        if judge is not None:
            verdict["probe"] = judge(document, summary.histograms, verdict)
        directory = self._trial_writer.finish(summary, verdict)
        attempt = self._trial_writer.attempt
        self._trial_writer = None
        self.bus.summary(document)
        return {"trial_id": trial.id, "index": trial.index, "params": trial.params,
                "directory": directory, "passed": verdict["passed"],
                "problems": verdict["problems"], "attempt": attempt, "summary": document,
                "probe": verdict.get("probe")}

    def _trial_energy(self, summary) -> dict | None:
        """The trial's GPU energy over its measured window (None without GPU telemetry).

        Telemetry comes every monitoring interval, so the point after the window's end may
        still be on its way: wait up to two intervals for the samples to cover the window."""
        start, end = summary.window_start_ns, summary.window_end_ns
        if start is None or end is None or end <= start:
            return None
        tokens = summary.overall["output_tokens"]
        patience = 2 * self.recipe.data["monitoring"]["interval"]
        give_up = time.monotonic() + patience
        while True:
            energy = self.energy.trial(start, end, tokens)
            if (energy is None or energy.covered_s >= (end - start) / 1e9
                    or time.monotonic() >= give_up):
                break
            time.sleep(0.05)  # polling the meter the ingest thread feeds
        self.energy.forget_before(end)
        if energy is None:
            return None
        return {"joules": energy.joules, "output_tokens_per_joule": energy.tokens_per_joule,
                "source": ", ".join(sorted(set(energy.methods.values()))),
                "gpus": len(energy.per_gpu_joules), "covered_s": energy.covered_s,
                "window_s": (end - start) / 1e9}

    def _trial_server(self, summary) -> dict | None:
        """The server's own view of the trial (None when no monitor scraped a server): like
        the energy, wait up to two monitoring intervals for a scrape after the window's end."""
        start, end = summary.window_start_ns, summary.window_end_ns
        if start is None or end is None or end <= start or not self.server_metrics.nodes:
            return None
        give_up = time.monotonic() + 2 * self.recipe.data["monitoring"]["interval"]
        while not self.server_metrics.covered(end) and time.monotonic() < give_up:
            time.sleep(0.05)  # polling the log the ingest thread feeds
        try:
            return server_view.record(self.server_metrics, self._trial_writer.trial_dir,
                                      start, end, self._trial_writer.read_batches())
        finally:
            self.server_metrics.forget_before(end)

    def earlier_result(self, trial) -> dict:
        """The result record of a trial finished by an earlier run of this session (resume),
        with the verdict stored in its trial.done (never decided again)."""
        directory = self.session_dir / trial.id
        outcome = read_outcome(directory) or {}
        return {"trial_id": trial.id, "index": trial.index, "params": trial.params,
                "directory": directory, "passed": outcome.get("verdict") == verdicts.PASSED,
                "problems": outcome.get("problems", []), "attempt": outcome.get("attempt"),
                "summary": read_summary(directory), "earlier": True,
                "probe": outcome.get("probe")}

    def earlier_session(self) -> dict:
        """The session record an earlier run of this session wrote ({} if none or unreadable):
        what a resumed run keeps when it has nothing left to measure itself."""
        return session_file.read_record(self.session_dir)

    def abort_trial(self, reason: str = "") -> None:
        """The running trial will not finish: close it in the aggregator (later batches are
        counted as after-close, not written), close its files and mark it stopped with
        `reason`, without a verdict (a re-run of the session measures it again). In
        histogram mode the executors' complete raw files join samples.msgpack.partial as for
        a finished trial; incomplete ones stay in node_samples/."""
        if self._trial_writer is not None:
            executors, self._node_sample_executors = self._node_sample_executors, []
            self._aggregation = None
            try:
                if executors:
                    with contextlib.suppress(OSError):   # what is not gathered stays on disk
                        self._trial_writer.gather_executor_samples(executors)
                self.aggregator.close_trial(self._trial_id)
            finally:
                self._trial_writer.abort(reason)
                self._trial_writer = None

    def _wait_for_batches(self, timeout_s: float) -> dict[str, int]:
        """Wait until the aggregator has every batch the executors sent; return what is missing."""
        pause_until = time.monotonic() + timeout_s
        while True:
            missing = {agent: expected - self.aggregator.batches_received(agent)
                       for agent, expected in self._expected_batches.items()
                       if self.aggregator.batches_received(agent) < expected}
            if not missing or time.monotonic() >= pause_until:
                return missing
            time.sleep(0.01)  # polling a counter the ingest thread advances

    def _copy_trial_logs(self, log_dir: Path) -> None:
        """Copy what each component logged during the trial into <trial>/logs/."""
        target = self._trial_writer.logs_dir
        for path in Path(log_dir).glob("*.log"):
            with open(path, "rb") as source:
                source.seek(self._log_offsets.get(path, 0))
                write_atomic(target / path.name, source.read())

    def finish(self, session_record: dict, write: bool = True) -> None:
        """Stop ingesting (what is queued still counts) and record the session: session.json
        (session_file.py) with this run's integrity counters in its last run; with `write`
        False (a run that measured nothing) it stays as it is."""
        self.abort_trial()
        self.server.stop()
        if write:
            session_record["runs"][-1]["integrity"] = self.aggregator.integrity()
            write_atomic(self.session_dir / SESSION_FILE,
                         json.dumps(session_record, indent=2, default=str) + "\n")
        self._ended = {key: session_record[key] for key in ("state", "error")}   # session_end

    def close(self) -> None:
        """Announce the end on the bus, then close it (and the Prometheus endpoint)."""
        if self._ended is not None:
            self.publish_event(Event.SESSION_END, **self._ended)
        if self.metrics_server is not None:
            self.metrics_server.close()
        self.bus.close()
        self._remove_socket_dir()

    def _remove_socket_dir(self) -> None:
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)


def headline(snapshot: dict | None) -> dict:
    """The few figures progress displays show: req/s, TTFT p50/p99 (ms), requests, errors,
    and TTFR/TTFA p50 (ms; None unless the answers stream reasoning).

    Rates are the trial's measured window so far, not the last interval's: executors send a
    batch about once a second and snapshots come once a second, so an interval holds zero,
    one or two batches and its rate jumps (0, 16, 48, 32 ... for a steady 42 req/s)."""
    figures = {"req_per_s": None, "ttft_p50": None, "ttft_p99": None, "requests": 0,
               "errors": 0, "warmup": 0, "output_tokens_per_s": None, "ttfr_p50": None,
               "ttfa_p50": None}
    if not snapshot:
        return figures
    cumulative = snapshot.get("cumulative") or {}
    latency = cumulative.get("latency") or {}
    ttft = latency.get("ttft") or {}
    if (latency.get("ttfr") or {}).get("count"):
        figures.update(ttfr_p50=latency["ttfr"].get("p50"),
                       ttfa_p50=(latency.get("ttfa") or {}).get("p50"))
    figures.update(req_per_s=cumulative.get("req_per_s"),
                   output_tokens_per_s=cumulative.get("output_tokens_per_s"),
                   ttft_p50=ttft.get("p50"), ttft_p99=ttft.get("p99"),
                   requests=cumulative.get("requests", 0),
                   errors=cumulative.get("error_total", 0),
                   warmup=cumulative.get("warmup_requests", 0))
    return figures


def data_plane_protection(security: dict, single_machine: bool) -> str:
    """How the sample, telemetry and bus sockets keep out what the session did not produce:
    - "ipc": socket files in a fresh 0700 directory; only this user can connect. The default
      when every component runs on this machine and nothing asked for a network address.
    - "curve": tcp with the session's CURVE keys; a peer without them never completes the
      handshake. The default wherever other machines reach the sockets (Slurm, a
      security.bind_address), and what security.curve: true asks for.
    - "plain": tcp, unauthenticated: only when the recipe says security.curve: false and the
      sockets must be reachable from other machines (recorded in every summary.json)."""
    curve = security.get("curve")
    if single_machine and not security.get("bind_address") and curve is not True:
        return "ipc"
    return "plain" if curve is False else "curve"


def reachable(endpoint: str, host: str) -> str:
    """A bound ZeroMQ endpoint as peers must dial it: tcp://0.0.0.0:PORT listens everywhere
    but is no address to connect to, so it is named by `host` (ipc endpoints are paths)."""
    if not endpoint.startswith("tcp://"):
        return endpoint
    return f"tcp://{host}:{endpoint.rsplit(':', 1)[1]}"


def loss_accounts(summary, losses: dict[str, dict]) -> dict[str, dict]:
    """Each lost executor's account: why, what its last heartbeat said it had recorded and had
    in flight, what arrived, and so how many samples at least it recorded but never delivered
    (samples produced = stored + unsent; requests in flight when it died have no sample)."""
    accounts = {}
    for agent_id, loss in losses.items():
        figures = summary.executors.get(agent_id, {})
        stored = sum(figures.get(key, 0)
                     for key in ("requests", "warmup_requests", "drain_requests"))
        recorded = loss.get("recorded", 0)
        accounts[agent_id] = {
            "reason": loss["reason"], "stored": stored,
            "recorded_at_last_heartbeat": recorded,
            "unsent_at_least": max(recorded - stored, 0),
            "in_flight_at_last_heartbeat": loss.get("in_flight", 0),
            "lost_at_ns": summary.integrity.get("missing_executors_since_ns", {}).get(agent_id)}
    return accounts


def snapshot_message(session_id: str, snapshot: dict) -> pb.Snapshot:
    figures = headline(snapshot)
    return pb.Snapshot(session_id=session_id, trial_id=snapshot.get("trial") or "",
                       seq=snapshot.get("seq", 0), requests_per_s=figures["req_per_s"] or 0.0,
                       output_tokens_per_s=figures["output_tokens_per_s"] or 0.0,
                       ttft_p50_ms=figures["ttft_p50"] or 0.0,
                       ttft_p99_ms=figures["ttft_p99"] or 0.0, requests=figures["requests"],
                       errors=figures["errors"], json=json.dumps(snapshot, default=str),
                       missing_executors=snapshot.get("missing_executors", []))
