"""`hpcbench watch`: Follow a running session's live metrics.

Subscribes to the session's metrics bus (ZeroMQ; endpoint from coordinator.json or
Control.Status): first the current state (last-value cache), then every snapshot and lifecycle
event as it happens. On a terminal it shows the live panel of `hpcbench run` (watch_panel.py);
elsewhere, or with --plain, --json, --count, one line per message. Ends when the session ends,
after --count messages, or on Ctrl-C.
A session with security.curve serves its bus over CURVE only: watch then connects with the
curve.keys of its run directory (or --curve-keys).
"""
from __future__ import annotations

import argparse
import json

HELP = "Follow a running session's live metrics"


def configure(parser: argparse.ArgumentParser) -> None:
    from hpcbench.coordinator.cli.remote_options import add_remote_arguments
    from hpcbench.coordinator.control.client import add_target_arguments

    add_target_arguments(parser)
    add_remote_arguments(parser)
    parser.add_argument("--wait-start", type=float, default=600.0, metavar="S",
                        help="with --remote --job: wait up to S seconds for a pending job's "
                             "session to start (default 600)")
    parser.add_argument("--bus", metavar="ENDPOINT", help="metrics bus endpoint (tcp://HOST:PORT)")
    parser.add_argument("--curve-keys", metavar="PATH",
                        help="the session's curve.keys (default: the one in its run directory)")
    parser.add_argument("--topics", default="snapshot,event,summary",
                        help="comma-separated: snapshot, event, telemetry, summary")
    parser.add_argument("--json", action="store_true", help="one JSON message per line")
    parser.add_argument("--plain", action="store_true",
                        help="one line per message even on a terminal (no live panel)")
    parser.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    parser.add_argument("--idle-timeout", type=float, default=30.0, metavar="S",
                        help="give up after S seconds without a message (default 30)")


def run(args: argparse.Namespace) -> int:
    from hpcbench.coordinator.cli.remote_options import job_as_session

    topics = _checked_topics(args)
    job_as_session(args)
    if args.remote:
        return _run_remote(args, topics)
    if args.bus:
        return follow(args.bus, topics, _curve_keys(args.curve_keys, args.run_dir), args)
    from hpcbench.coordinator.control.client import ControlClient

    endpoint, target = _bus_endpoint(args)
    if endpoint is None:
        return 0
    with ControlClient(target) as client:
        return follow(endpoint, topics, _curve_keys(args.curve_keys, target.run_dir), args,
                      client)


def _checked_topics(args: argparse.Namespace) -> list[str]:
    from hpcbench.common.errors import config_error
    from hpcbench.common.limits import MAX_DURATION_S, describe_duration_limit
    from hpcbench.proto import bus as contract

    for flag, value in (("--idle-timeout", args.idle_timeout), ("--wait-start", args.wait_start)):
        if not 0 < value <= MAX_DURATION_S:      # also false for nan
            raise config_error(f"{flag} {value}: expected seconds > 0, "
                               f"{describe_duration_limit()}")
    if args.count is not None and args.count < 1:
        raise config_error(f"--count {args.count}: expected 1 or more messages")
    topics = [topic.strip() for topic in args.topics.split(",") if topic.strip()]
    unknown = [topic for topic in topics if topic not in contract.TOPICS]
    if unknown:
        raise config_error(f"--topics: unknown topic(s) {unknown}",
                           [f"choose from {', '.join(contract.TOPICS)}"])
    return topics


def follow(endpoint: str, topics: list[str], curve, args: argparse.Namespace,
           client=None) -> int:
    """Show the bus messages until the session ends, --count, or --idle-timeout: the live
    panel on a terminal when the coordinator (`client`) can be asked for the state, else one
    line per message."""
    from rich.console import Console

    from hpcbench.common.errors import HpcbenchError
    from hpcbench.coordinator.bus.publisher import subscribe
    from hpcbench.coordinator.cli.watch_panel import show_live

    messages = subscribe(endpoint, topics, idle_timeout_s=args.idle_timeout, curve=curve)
    console = Console()
    if (client is not None and console.is_terminal and not (args.json or args.plain)
            and args.count is None):
        received = show_live(messages, client, console)
    else:
        received = _print_lines(messages, args)
    if not received:
        raise HpcbenchError("E008", f"no message from the metrics bus {endpoint} within "
                            f"{args.idle_timeout:g}s", ("the session may have ended: "
                                                        "`hpcbench status` tells",))
    return 0


def _print_lines(messages, args: argparse.Namespace) -> int:
    from hpcbench.proto import bus as contract

    received = 0
    for message in messages:
        print(json.dumps(message, default=str) if args.json else describe(message), flush=True)
        received += 1
        data = message["data"]
        if args.count and received >= args.count:
            break
        if (message["topic"] == contract.EVENT and data.get("event") == "session_end"
                and not message["replay"]):
            break
    return received


def _run_remote(args: argparse.Namespace, topics: list[str]) -> int:
    """The bus through the SSH tunnel, with the keys read over SSH."""
    from hpcbench.common.errors import HpcbenchError, config_error
    from hpcbench.coordinator.cli.remote_options import connection, refuse_local_flags
    from hpcbench.coordinator.control.client import ControlClient

    refuse_local_flags(args, "run_dir", "address", "token_file", "tls_cert", "bus", "curve_keys")
    with connection(args) as ssh:
        session = _wait_for_start(args, ssh)
        if not session.ended():
            target = session.target()
            if not target.bus_endpoint:
                raise config_error(f"the metrics bus of {session} is not on TCP, so no tunnel "
                                   "reaches it", ["fix: `hpcbench watch` on the login node"])
            try:
                with ControlClient(target) as client:
                    return follow(target.bus_endpoint, topics, session.curve_keys(), args,
                                  client)
            except HpcbenchError as error:
                if error.code != "E008" or not session.ended():
                    raise
        print(f"session {session.session_id} ended before watch attached; its final state:",
              flush=True)
        print(session.final_state(args.remote_hpcbench, args.json))
    return 0


def _wait_for_start(args: argparse.Namespace, ssh):
    """The session, once its coordinator is up or it has ended: a pending job is waited for
    up to --wait-start seconds."""
    import sys
    import threading
    import time

    from hpcbench.common.errors import HpcbenchError
    from hpcbench.coordinator.cli.remote_options import find
    from hpcbench.coordinator.remote.sessions import JobNotStarted

    deadline, told = time.monotonic() + args.wait_start, False
    while True:
        try:
            session = find(args, ssh)
            if session.coordinator() or session.ended():
                return session
            why = f"session {session.session_id} is starting"
        except JobNotStarted as pending:
            why = pending.message
        if time.monotonic() >= deadline:
            raise HpcbenchError("E007", f"{why}; gave up after --wait-start {args.wait_start:g}s",
                                ("fix: watch again later, or raise --wait-start",))
        if not told:
            print(f"waiting: {why}", file=sys.stderr, flush=True)
            told = True
        threading.Event().wait(2.0)


def _curve_keys(curve_file: str | None, run_dir):
    """The session's CURVE keys: --curve-keys, else the run directory's curve.keys if there."""
    from pathlib import Path

    from hpcbench.common.curve import KEYS_FILE, load_keys

    if curve_file:
        return load_keys(Path(curve_file))
    if run_dir is not None and (Path(run_dir) / KEYS_FILE).exists():
        return load_keys(Path(run_dir))
    return None


def _bus_endpoint(args) -> tuple[str | None, object]:
    """The session's bus endpoint and its Target; endpoint None (after saying so) when the
    session has ended."""
    from hpcbench.coordinator.control.client import ControlClient, target_from_args
    from hpcbench.coordinator.session.session_file import ENDED, read_record

    target = target_from_args(args)
    record = read_record(target.run_dir) if target.run_dir is not None else {}
    if record.get("state") in ENDED:     # RUNNING: a run of the session is measuring now
        print(f"session {record.get('session', '')} has ended ({record['state'].lower()}); "
              f"its results are in {target.run_dir}")
        return None, target
    if target.bus_endpoint:
        return target.bus_endpoint, target
    with ControlClient(target) as client:
        return client.status().bus_endpoint, target


def describe(message: dict) -> str:
    """One readable line per bus message."""
    from hpcbench.coordinator.session.recording import headline

    data, topic = message["data"], message["topic"]
    mark = " (current)" if message["replay"] else ""
    if topic == "snapshot":
        figures = headline(data)
        return (f"snapshot {data.get('trial') or '-'}{mark}: {_fmt(figures['req_per_s'])} req/s, "
                f"TTFT p50 {_fmt(figures['ttft_p50'])} p99 {_fmt(figures['ttft_p99'])} ms, "
                f"{figures['requests']} requests, {figures['errors']} errors")
    if topic == "event":
        fields = ", ".join(f"{key}={value}" for key, value in data.items() if key != "event")
        return f"event {data.get('event')}{mark}: {fields}"
    if topic == "summary":
        overall = data.get("overall", {})
        return (f"summary {data.get('trial')}{mark}: {overall.get('requests')} requests, "
                f"{_fmt(overall.get('req_per_s'))} req/s, {overall.get('error_total')} errors")
    return f"{topic} {data.get('node', '')}{mark}: {len(data.get('metrics', {}))} metrics"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"
