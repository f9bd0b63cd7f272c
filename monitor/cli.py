"""`hpcbench-monitor`: one per node; samples node, GPU and server telemetry at a fixed interval.

Started by the coordinator locally and by run.sbatch on clusters, or by hand without any
coordinator (standalone: CSV, Prometheus endpoint and/or Pushgateway only). With --coordinator
it is also an agent of the session (common/agent_link.py): registered, heartbeating, stopped
by the coordinator's STOP, and ending by itself (status 4) when the coordinator is lost beyond
its lease. Stops on SIGTERM or SIGINT (after writing the last row and pushing the final values),
after --samples samples, or after --duration.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from hpcbench.common.agent_link import add_agent_arguments
from hpcbench.common.durations import parse_duration
from hpcbench.common.errors import HpcbenchError, config_error
from hpcbench.common.logs import configure_logging
from hpcbench.monitor.compat import CHOICES

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcbench-monitor",
        description="Sample CPU, memory, load, network, disk, the service process, NVIDIA GPUs "
                    "(NVML) and the inference server's /metrics; push them to the coordinator, "
                    "a CSV, a Prometheus endpoint and/or a Pushgateway.")
    parser.add_argument("--coordinator-telemetry", metavar="ENDPOINT",
                        help="ZeroMQ endpoint of the coordinator's telemetry PULL socket "
                             "(e.g. tcp://10.0.0.1:5556); omit to run standalone (with "
                             "--coordinator: default, the endpoint the coordinator names)")
    parser.add_argument("--curve-keys", metavar="PATH",
                        default=os.environ.get("HPCBENCH_CURVE_KEYS", ""),
                        help="the session's curve.keys when its recipe sets security.curve: "
                             "telemetry goes out CURVE-encrypted (default: $HPCBENCH_CURVE_KEYS)")
    agent = parser.add_argument_group("agent of a coordinator's session (common/agent_link.py)")
    agent.add_argument("--coordinator", metavar="HOST:PORT",
                       help="register with this coordinator's gRPC address (coordinator.json "
                            "'control'): heartbeats, STOP, exit when the coordinator is lost")
    add_agent_arguments(agent, "session id this monitor belongs to")
    parser.add_argument("--run-id", default="standalone", help="run id stamped on every message")
    parser.add_argument("--node", default=os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
                        help="node name (default: $SLURMD_NODENAME, else the host name)")
    parser.add_argument("--interval", "--monitor-interval", dest="interval", default="1s",
                        metavar="DURATION", help="sampling interval, e.g. 1s, 500ms, 2 (default 1s)")
    parser.add_argument("--server-metrics", metavar="URL",
                        help="the inference server's Prometheus /metrics URL to scrape")
    parser.add_argument("--service-pid", type=int, metavar="PID",
                        help="pid of the service process: its tree's CPU time and RSS are sampled")
    parser.add_argument("--csv", "--monitor-output", dest="csv", type=Path, metavar="PATH",
                        help="write the node CSV (timestamp, gpuN_util, gpuN_mem_used, ..., "
                             "cpu_percent, ram_used_MB) here")
    parser.add_argument("--prometheus-port", type=int, metavar="N",
                        help="serve Prometheus metrics on this port (0 picks a free one)")
    parser.add_argument("--prometheus-host", default="127.0.0.1", metavar="ADDR",
                        help="address the Prometheus endpoint binds to (default 127.0.0.1)")
    parser.add_argument("--prometheus-port-file", type=Path, metavar="PATH",
                        help="write the Prometheus port here once it is serving")
    parser.add_argument("--compat-names", default="none", metavar="NAMES",
                        help="'reference': also expose the reference toolkit's names "
                             "(cpu_usage_percent, ram_used_megabytes, gpu_utilization_percent, "
                             "gpu_memory_used_megabytes, ...) on the Prometheus endpoint and in "
                             "pushes, next to hpcbench's own (default 'none')")
    parser.add_argument("--enable-monitoring", action="store_true",
                        help="push metrics to the Pushgateway given by --pushgateway-node")
    parser.add_argument("--pushgateway-node", metavar="HOST[:PORT]",
                        help="Pushgateway host (port 9091 unless given) or http(s) URL")
    parser.add_argument("--push-interval", default="15s", metavar="DURATION",
                        help="time between Pushgateway pushes (default 15s)")
    parser.add_argument("--samples", type=int, metavar="N", help="stop after N samples")
    parser.add_argument("--duration", metavar="DURATION", help="stop after this long")
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging("hpcbench-monitor")
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except HpcbenchError as error:
        log.error(error.render())
        return error.exit_status


def run(args: argparse.Namespace) -> int:
    from hpcbench.monitor.build import build_sampler

    interval_s = _positive_duration("--interval", args.interval)
    push_every_s = _positive_duration("--push-interval", args.push_interval)
    duration_s = _positive_duration("--duration", args.duration) if args.duration else None
    _check(args)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    link = _join_coordinator(args, stop) if args.coordinator else None
    try:
        with build_sampler(args, interval_s, push_every_s) as sampler:
            sampler.run(stop, max_samples=args.samples, duration_s=duration_s)
    finally:
        if link is not None:
            link.close()
    log.info("stopped after %d samples (%d missed ticks)", sampler.samples, sampler.missed)
    return link.exit_status if link is not None else 0


def _join_coordinator(args: argparse.Namespace, stop: threading.Event):
    """Register with the coordinator and keep the lease from now on (an AgentLink); telemetry
    goes where the coordinator says unless --coordinator-telemetry overrides it."""
    from hpcbench.common.agent_link import AgentLink  # gRPC only for monitors with a coordinator
    from hpcbench.proto import control_v1_pb2 as pb

    if not args.session:
        raise config_error("--coordinator needs the session id: pass --session ID or set "
                           "HPCBENCH_SESSION")

    def on_command(command: pb.Command) -> None:
        """STOP and SHUTDOWN end the sampling; a monitor samples whatever the trial, so
        CONFIGURE and START mean nothing to it."""
        if command.kind in (pb.STOP, pb.SHUTDOWN):
            log.info("%s from the coordinator: stopping", pb.CommandKind.Name(command.kind))
            stop.set()

    link = AgentLink.from_args(args, pb.MONITOR, on_command=on_command,
                               heartbeat=lambda: {"state": pb.BUSY}, on_lost=stop.set)
    try:
        reply = link.register(args.session, args.agent_id, args.node)
    except HpcbenchError:
        link.close()
        raise
    args.coordinator_telemetry = args.coordinator_telemetry or reply.sample_endpoint
    link.start()
    log.info("registered as %s of session %s (lease %gs)", reply.agent_id, reply.session_id,
             reply.lease_s)
    return link


def _positive_duration(flag: str, value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        raise config_error(f"{flag}: {error}") from None
    if seconds <= 0:
        raise config_error(f"{flag} {value!r} must be longer than 0, e.g. 1s or 500ms")
    return seconds


def _check(args: argparse.Namespace) -> None:
    if args.server_metrics and urlparse(args.server_metrics).scheme not in ("http", "https"):
        raise config_error(f"--server-metrics {args.server_metrics!r} is not an http(s) URL",
                           ["give the server's metrics URL, e.g. http://127.0.0.1:8000/metrics"])
    if args.prometheus_port is not None and not 0 <= args.prometheus_port <= 65535:
        raise config_error(f"--prometheus-port {args.prometheus_port} is not a TCP port; "
                           "use 0..65535 (0 picks a free one)")
    if args.enable_monitoring and not args.pushgateway_node:
        raise config_error("--enable-monitoring needs --pushgateway-node HOST[:PORT] "
                           "(where the Prometheus Pushgateway runs)")
    if args.compat_names not in CHOICES:
        raise config_error(f"--compat-names {args.compat_names!r} is not one of "
                           f"{', '.join(CHOICES)}",
                           ["use --compat-names reference for the reference toolkit's metric "
                            "names, or leave the option out"])
    if args.compat_names != "none" and args.prometheus_port is None and not args.enable_monitoring:
        raise config_error(f"--compat-names {args.compat_names} names Prometheus series, but "
                           "this monitor exposes none",
                           ["add --prometheus-port N (an endpoint) or --enable-monitoring "
                            "--pushgateway-node HOST (pushes), or leave the option out"])
    if args.samples is not None and args.samples < 1:
        raise config_error(f"--samples {args.samples} must be at least 1")
