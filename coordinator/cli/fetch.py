"""`hpcbench fetch --remote HOST SESSION`: bring a session's results from the cluster.

They land in <--results-dir>/<scenario>/<session> as on the cluster, so `hpcbench report` and
`compare` work offline. Resumable: a second fetch (after a cut connection, or of a session still
running) copies only what is missing or changed (hpcbench.coordinator.remote.download).
"""
from __future__ import annotations

import argparse

HELP = "Copy a session's results from a cluster's login node (resumable)"


def configure(parser: argparse.ArgumentParser) -> None:
    from hpcbench.coordinator.cli.remote_options import add_remote_arguments
    from hpcbench.coordinator.remote.download import METHODS

    parser.add_argument("session", nargs="?", metavar="SESSION",
                        help="session id (a Slurm job's is its job id; default: the newest)")
    parser.add_argument("--results-dir", default="results",
                        help="local directory to put it under (default: results)")
    parser.add_argument("--via", choices=METHODS, default="auto",
                        help="rsync, tar (over ssh), or auto: rsync where both sides have it")
    add_remote_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hpcbench.common.errors import config_error
    from hpcbench.coordinator.cli.remote_options import connection, find
    from hpcbench.coordinator.remote.download import fetch

    if not args.remote:
        raise config_error("fetch needs --remote HOST (the login node the session ran from)",
                           ["e.g. hpcbench fetch --remote login 12345"])
    with connection(args) as ssh:
        session = find(args, ssh, session=args.session)
        running = not session.ended()
        local, method = fetch(session, Path(args.results_dir), args.via)
    print(f"fetched {session} -> {local} ({method})")
    if running:
        print("the session is still running: fetch again when it has ended for the rest")
    print(f"report: hpcbench report {local}")
    return 0
