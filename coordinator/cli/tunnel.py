"""`hpcbench tunnel --remote HOST`: local ports for a laptop's Prometheus and Grafana.

Forwards the running session's Prometheus endpoints (the coordinator's, which carries every
node's telemetry too, and each monitor's) and its control port and metrics bus to ports on
127.0.0.1 through one SSH connection, prints them with a scrape configuration, and holds them
until Ctrl-C (or SIGTERM), which closes the connection. `--coordinator-port 9400` keeps
monitor/compose.yaml's prometheus.yml working unchanged (docs/monitoring.md).
"""
from __future__ import annotations

import argparse

HELP = "Forward a cluster session's metrics endpoints to local ports (for Prometheus/Grafana)"


def configure(parser: argparse.ArgumentParser) -> None:
    from hpcbench.coordinator.cli.remote_options import add_remote_arguments

    parser.add_argument("--session", help="session id (default: the newest)")
    parser.add_argument("--coordinator-port", type=int, default=0, metavar="PORT",
                        help="local port for the coordinator's Prometheus endpoint (e.g. 9400, "
                             "what monitor/prometheus.yml scrapes; default: a free one)")
    add_remote_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import threading

    from hpcbench.common.errors import HpcbenchError, config_error
    from hpcbench.coordinator.cli.remote_options import connection, find

    if not args.remote:
        raise config_error("tunnel needs --remote HOST (the cluster's login node)")
    if not 0 <= args.coordinator_port <= 65535:
        raise config_error(f"--coordinator-port {args.coordinator_port}: expected a TCP port "
                           "1-65535, or 0 for a free one")
    with connection(args) as ssh:
        session = find(args, ssh)
        if session.ended():
            raise HpcbenchError("E008", f"session {session.session_id} on {args.remote} has "
                                "ended: nothing to forward",
                                (f"its results: hpcbench fetch --remote {args.remote} "
                                 f"{session.session_id}",))
        target = session.target()
        endpoints = session.prometheus_endpoints(args.coordinator_port)
        print(f"session {session.session_id} on {args.remote}, forwarded to this machine:")
        print(f"  control    {target.address}")
        if target.bus_endpoint:
            print(f"  bus        {target.bus_endpoint}")
        for endpoint in endpoints:
            print(f"  {endpoint.name:<10} http://127.0.0.1:{endpoint.local_port}/metrics"
                  f"  ({endpoint.remote})")
        if not endpoints:
            print("  no Prometheus endpoint: the recipe has monitoring.prometheus.enabled "
                  "false")
        else:
            print("prometheus.yml:\n  scrape_configs:\n    - job_name: hpcbench\n"
                  "      static_configs:\n        - targets: ["
                  + ", ".join(f"'host.docker.internal:{e.local_port}'" for e in endpoints) + "]")
        print("holding the tunnel; Ctrl-C closes it", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    print("tunnel closed", flush=True)
    return 0
