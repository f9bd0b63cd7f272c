"""Assemble a Sampler from `hpcbench-monitor` options, and release everything it opened."""
from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator

import psutil

from hpcbench.common.errors import HpcbenchError, config_error
from hpcbench.monitor.csv_log import CsvLog
from hpcbench.monitor.exposition import TelemetryCollector, serve
from hpcbench.monitor.gpu import GpuSource
from hpcbench.monitor.node import NodeSource
from hpcbench.monitor.pushgateway import Pusher
from hpcbench.monitor.sampler import Outputs, Sampler, Source
from hpcbench.monitor.server_metrics import ServerMetricsSource
from hpcbench.monitor.service_process import ServiceProcessSource
from hpcbench.monitor.telemetry_sender import TelemetrySender

log = logging.getLogger(__name__)


@contextlib.contextmanager
def build_sampler(args: argparse.Namespace, interval_s: float,
                  push_every_s: float) -> Iterator[Sampler]:
    with contextlib.ExitStack() as cleanup:
        outputs = Outputs()
        if args.coordinator_telemetry:  # first: a bad endpoint fails before anything else starts
            curve = None
            if getattr(args, "curve_keys", ""):
                from hpcbench.common.curve import load_keys

                curve = load_keys(args.curve_keys)
            outputs.telemetry = TelemetrySender(args.coordinator_telemetry, curve=curve)
            cleanup.callback(outputs.telemetry.close)
        sources: list[Source] = [NodeSource()]
        if args.service_pid is not None:
            try:
                sources.append(ServiceProcessSource(args.service_pid))
            except psutil.NoSuchProcess:
                raise config_error(f"--service-pid {args.service_pid}: no such process",
                                   ["pass the pid of the running service, or leave it out"]) from None
        gpus, gpu_line = GpuSource.open()
        log.info("%s", gpu_line + ("" if gpus else "; CPU, memory, network and disk sampling goes on"))
        if gpus is not None:
            cleanup.callback(gpus.close)
            sources.append(gpus)
        if args.server_metrics:
            sources.append(ServerMetricsSource(args.server_metrics, timeout_s=min(interval_s, 2.0)))

        if args.csv:
            try:
                outputs.csv = CsvLog(args.csv)
            except OSError as error:
                raise config_error(f"--csv {args.csv}: cannot write it ({error.strerror})",
                                   ["give a path in a writable directory"]) from None
            cleanup.callback(outputs.csv.close)
        if args.prometheus_port is not None or args.enable_monitoring:
            outputs.collector = TelemetryCollector(args.compat_names)
        if args.prometheus_port is not None:
            try:
                server, port = serve(outputs.collector, args.prometheus_host, args.prometheus_port,
                                     args.prometheus_port_file)
            except OSError as error:
                raise HpcbenchError(
                    "E005", f"cannot serve Prometheus metrics on "
                    f"{args.prometheus_host}:{args.prometheus_port} ({error})",
                    ("pick a free --prometheus-port, or 0 to let the system choose (for "
                     "monitors a session starts: the recipe's monitoring.prometheus.monitor_port)",)
                ) from None
            cleanup.callback(server.server_close)
            cleanup.callback(server.shutdown)
            log.info("Prometheus metrics on http://%s:%s/metrics", args.prometheus_host, port)
        if args.enable_monitoring:
            outputs.pusher = Pusher(args.pushgateway_node, args.node,
                                    outputs.collector.push_view(), push_every_s)
            log.info("pushing to Pushgateway %s every %gs", outputs.pusher.gateway, push_every_s)
        log.info("node %s, run %s: sampling every %gs", args.node, args.run_id, interval_s)
        yield Sampler(args.run_id, args.node, interval_s, sources, outputs)
