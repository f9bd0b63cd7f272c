"""The executor's side of the Agent service: run the trials its coordinator sends.

`hpcbench-executor --coordinator HOST:PORT` (and the local launcher, via
`python -m hpcbench.executor.agent`) lands here. Registration, the command stream and the lease
are the shared `AgentLink` (common/agent_link.py); this module is what an executor does with
the commands: CONFIGURE (a trial's configuration, proto/trial.py) builds a LoadConfig, START
runs `engine.Trial` pushing sample batches over ZeroMQ, STOP ends the running trial early (it
drains), SHUTDOWN exits. When the link reports the coordinator lost beyond the lease, the
running trial stops and the agent exits with EXIT_LOST.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import queue
import sys
import threading
from pathlib import Path

import uvloop

from hpcbench.common.agent_link import EXIT_LOST, AgentLink, add_agent_arguments
from hpcbench.common.curve import load_keys
from hpcbench.common.errors import HpcbenchError
from hpcbench.common.logs import configure_logging
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.proto.trial import HISTOGRAMS

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpcbench-executor --coordinator",
                                     description="Run as an agent of a coordinator's session.")
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The agent's flags (executor/cli.py may add them to its own parser)."""
    parser.add_argument("--coordinator", required=True, metavar="HOST:PORT",
                        help="the coordinator's gRPC address (coordinator.json 'control')")
    add_agent_arguments(parser, "session id this executor belongs to")
    parser.add_argument("--curve-keys", default=os.environ.get("HPCBENCH_CURVE_KEYS", ""),
                        help="the session's curve.keys when its recipe sets security.curve "
                             "(default: $HPCBENCH_CURVE_KEYS)")
    parser.add_argument("--node", default=os.environ.get("SLURMD_NODENAME", "localhost"),
                        help="node name reported with samples (default: $SLURMD_NODENAME)")


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    """Serve a coordinator. `args` is argv, or the namespace of `hpcbench-executor`'s parser
    (which has --coordinator, --executor-id, --node); what it lacks comes from the environment:
    HPCBENCH_SESSION, HPCBENCH_TOKEN or HPCBENCH_TOKEN_FILE, HPCBENCH_AGENT_ID and
    HPCBENCH_CURVE_KEYS (samples then go out CURVE-encrypted)."""
    configure_logging("hpcbench-executor")
    if not isinstance(args, argparse.Namespace):
        args = build_parser().parse_args(args)
    session = getattr(args, "session", "") or os.environ.get("HPCBENCH_SESSION", "")
    agent_id = (getattr(args, "agent_id", "") or getattr(args, "executor_id", "")
                or os.environ.get("HPCBENCH_AGENT_ID", ""))
    node = getattr(args, "node", "") or os.environ.get("SLURMD_NODENAME", "localhost")
    args.token_file = getattr(args, "token_file", "") or os.environ.get("HPCBENCH_TOKEN_FILE", "")
    curve_file = getattr(args, "curve_keys", "") or os.environ.get("HPCBENCH_CURVE_KEYS", "")
    try:
        curve = load_keys(Path(curve_file)) if curve_file else None
        agent = ExecutorAgent(curve=curve)
        agent.link = AgentLink.from_args(args, pb.EXECUTOR, on_command=agent.on_command,
                                         heartbeat=agent.heartbeat, on_lost=agent.on_lost)
    except HpcbenchError as error:
        log.error(error.render())
        return error.exit_status
    try:
        agent.link.register(session, agent_id, node)
        return agent.serve()
    except HpcbenchError as error:
        log.error(error.render())
        return error.exit_status
    finally:
        agent.link.close()


class ExecutorAgent:
    """What one executor process does with its coordinator's commands."""

    def __init__(self, curve=None):
        """`curve`: the session's CurveKeys when it runs with security.curve."""
        self.curve = curve
        self.link: AgentLink | None = None
        self.commands: queue.Queue = queue.Queue()
        self.state = pb.IDLE
        self.trial_id = ""
        self.requests_done = 0      # requests of the trials finished so far (heartbeats carry it)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_trial: asyncio.Event | None = None
        self._running_trial = ""
        self._stopped: set[str] = set()     # trials told to STOP (it may overtake their START)
        self._stops_lock = threading.Lock()
        self._sink = None
        self._samples_spec: dict = {}   # the configured trial's TrialConfig.samples
        self._trial = None          # the running engine.Trial (its progress goes in heartbeats)

    @property
    def reply(self) -> pb.RegisterReply:
        return self.link.reply

    def serve(self) -> int:
        # import the load generator and connect the sample socket now, while the coordinator
        # is still preparing the service, so the first START begins without delay
        import hpcbench.executor.engine  # noqa: F401

        self._sample_sink()
        self.link.start()
        config = None
        try:
            while True:
                command = self.commands.get()
                if command is None:          # the coordinator is gone
                    return EXIT_LOST
                if command.kind == pb.CONFIGURE:
                    config = self._configure(command)
                elif command.kind == pb.START and config is not None:
                    self._run(command.trial_id, config)
                    config = None
                elif command.kind == pb.SHUTDOWN:
                    return 0
        finally:
            self.state = pb.GONE
            if self._sink is not None:
                self._sink.close()

    # -- link callbacks (commands and heartbeat threads) -------------------------------------
    def on_command(self, command: pb.Command) -> None:
        """STOP acts at once; the rest queue for the main loop."""
        if command.kind == pb.STOP:
            self._request_trial_stop(command.trial_id)
        else:
            self.commands.put(command)

    def heartbeat(self) -> dict:
        trial = self._trial
        recorded, in_flight = trial.progress() if trial is not None else (0, 0)
        return {"state": self.state, "trial_id": self.trial_id,
                "requests_done": self.requests_done, "trial_recorded": recorded,
                "trial_in_flight": in_flight}

    def on_lost(self) -> None:
        self._request_trial_stop()
        self.commands.put(None)

    # -- commands ---------------------------------------------------------------------------
    def _configure(self, command: pb.Command):
        from hpcbench.executor.config import LoadConfig
        from hpcbench.proto.trial import TrialConfig

        self.trial_id = command.trial_id
        try:
            spec = TrialConfig.decode(command.config_json)
            config = LoadConfig.from_workload(
                spec.workload, spec.targets, executor_index=spec.executor_index,
                executor_count=spec.executor_count, run_id=spec.run_id,
                trial_id=spec.trial_id, executor_id=self.reply.agent_id, node=spec.node,
                request_extras=spec.request_extras)
            self._samples_spec = spec.samples
        except Exception as error:  # HpcbenchError, a bad message or a bug: report, keep serving
            self._report(command.trial_id, ok=False, error=_describe(error))
            return None
        self.state = pb.CONFIGURED
        return config

    def _run(self, trial_id: str, config) -> None:
        self.state = pb.BUSY
        try:
            stats, batches = uvloop.run(self._run_trial(config))   # the executor's loop
        except Exception as error:
            self._report(trial_id, ok=False, error=_describe(error))
        else:
            self.requests_done += stats.requests
            self._report(trial_id, ok=True, stats=stats, batches_sent=batches)
        finally:
            self.state = pb.IDLE
            with self._stops_lock:
                self._loop = self._stop_trial = None
                self._running_trial = ""

    async def _run_trial(self, config):
        from hpcbench.executor.engine import Trial

        with self._stops_lock:
            self._loop = asyncio.get_running_loop()
            self._stop_trial = asyncio.Event()
            self._running_trial = config.trial_id
            if self.link.lost.is_set() or config.trial_id in self._stopped:
                self._stop_trial.set()
        sink = self._sample_sink()
        before = sink.sent
        node_samples = None
        if self._samples_spec.get("mode") == HISTOGRAMS:   # rows stay here, summaries go out
            from hpcbench.executor.node_samples import NodeSamples

            node_samples = NodeSamples(self._samples_spec["raw_file"], config.slo)
            sink.encode = node_samples.encode
        self._trial = Trial(config, sink)
        try:
            stats = await self._trial.run(self._stop_trial)
        finally:
            self._trial = None
            if node_samples is not None:    # the raw file complete before the report
                sink.wait_written()
                node_samples.close()
                sink.encode = None
        return stats, sink.sent - before

    def _sample_sink(self) -> "SessionSink":
        """One PUSH socket for the agent's life (created on first use)."""
        if self._sink is None:
            from hpcbench.executor.sinks import ZmqSink

            # linger bounded by the lease: batches for a coordinator that is gone cannot be
            # delivered, so closing must not wait ZeroMQ's default 30 s for them
            self._sink = SessionSink(ZmqSink(self.reply.sample_endpoint,
                                             linger_ms=int(self.reply.lease_s * 1000),
                                             curve=self.curve))
        return self._sink

    def _request_trial_stop(self, trial_id: str = "") -> None:
        """Stop trial `trial_id` (or, without one, whatever runs): now if it runs, else as soon
        as it starts."""
        with self._stops_lock:
            if trial_id:
                self._stopped.add(trial_id)
            loop, event = self._loop, self._stop_trial
            if loop is not None and event is not None and trial_id in ("", self._running_trial):
                try:
                    loop.call_soon_threadsafe(event.set)
                except RuntimeError:   # the trial's loop just closed: nothing left to stop
                    pass

    def _report(self, trial_id: str, ok: bool, error: str = "", stats=None,
                batches_sent: int = 0) -> None:
        stats_json = json.dumps(_plain(stats), default=str) if stats is not None else ""
        self.link.report(pb.AgentReport(agent_id=self.reply.agent_id, trial_id=trial_id, ok=ok,
                                        error=error, stats_json=stats_json,
                                        batches_sent=batches_sent))


class SessionSink:
    """Numbers batches 0, 1, 2, ... over the agent's whole session, not per trial.

    The sample contract's sequence is per (run, executor): the engine starts each trial's
    recorder at 0, so without this the aggregator would take trial 2's batches for duplicates.
    `encode`: how the running trial's batches become wire bytes (None: raw batches).
    """

    def __init__(self, sink):
        self._sink = sink
        self.sent = 0
        self.encode = None

    def send(self, batch) -> None:
        batch.seq = self.sent
        if self.encode is None:
            self._sink.send(batch)
        else:
            self._sink.send(batch, self.encode)
        self.sent += 1

    def wait_written(self) -> None:
        self._sink.wait_written()

    def close(self) -> None:
        self._sink.close()


def _plain(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return value if isinstance(value, (dict, list, int, float, str)) else vars(value)


def _describe(error: Exception) -> str:
    render = getattr(error, "render", None)
    return render() if render else f"{type(error).__name__}: {error}"


if __name__ == "__main__":
    sys.exit(main())
