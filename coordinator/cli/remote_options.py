"""The `--remote HOST` options the verbs share, and the session they name on the login node.

`hpcbench submit|status|watch|stop|fetch|tunnel --remote HOST` work from a laptop through the
user's own `ssh` (hpcbench.coordinator.remote). Every such command opens one multiplexed
connection and closes it when it ends, also on Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import signal
from contextlib import contextmanager

DEFAULT_REMOTE_DIR = "hpcbench-runs"


def add_remote_arguments(parser: argparse.ArgumentParser, session_flags: bool = True) -> None:
    """--remote and its companions; `session_flags`: also --job and --remote-results-dir, for
    the verbs that find a session on the login node."""
    group = parser.add_argument_group("from a laptop, over SSH (docs/remote.md)")
    group.add_argument("--remote", metavar="HOST",
                       help="the cluster's login node: a host or ~/.ssh/config alias "
                            "(uses your ssh, its keys, ports and ProxyJump)")
    group.add_argument("--remote-dir", default=DEFAULT_REMOTE_DIR, metavar="DIR",
                       help=f"working directory on the login node, relative to your home "
                            f"there (default {DEFAULT_REMOTE_DIR}); jobs are submitted from it")
    group.add_argument("--ssh-config", metavar="FILE",
                       help="an ssh_config to use instead of ~/.ssh/config (ssh -F)")
    group.add_argument("--remote-hpcbench", default="hpcbench", metavar="PATH",
                       help="the hpcbench command on the login node (default: hpcbench on "
                            "its PATH)")
    if session_flags:
        group.add_argument("--job", metavar="ID", help="the Slurm job id (its session id)")
        group.add_argument("--remote-results-dir", default="results", metavar="DIR",
                           help="results directory on the login node, relative to --remote-dir "
                                "(the recipe's results_dir; default results)")


@contextmanager
def connection(args):
    """The SSH connection for this command; SIGTERM ends it like Ctrl-C (master closed)."""
    from hpcbench.coordinator.remote.ssh import SshConnection

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with SshConnection(args.remote, args.ssh_config) as ssh:
            yield ssh
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def find(args, ssh, session: str | None = None):
    """The RemoteSession that --session/--job (or `session`) names, else the newest."""
    from hpcbench.coordinator.remote.sessions import find_session

    return find_session(ssh, args.remote_dir, args.remote_results_dir,
                        session=session or getattr(args, "session", None),
                        job=getattr(args, "job", None))


def job_as_session(args) -> None:
    """Without --remote, `--job ID` names the session too (a Slurm job's session id is its job
    id), so the same command line works on the login node."""
    from hpcbench.common.errors import config_error

    if getattr(args, "job", None) and not args.remote:
        if args.session and args.session != args.job:
            raise config_error(f"--job {args.job} and --session {args.session} name different "
                               "sessions", ["fix: give one of them"])
        args.session = args.job


def refuse_local_flags(args, *names: str) -> None:
    """Flags that name local files make no sense with --remote: E006 instead of ignoring them."""
    from hpcbench.common.errors import config_error

    given = [name for name in names if getattr(args, name, None)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise config_error(f"{flags} cannot be combined with --remote",
                           ["fix: with --remote, name the session with --session or --job"])
