"""An agent's conversation with its coordinator: register, follow commands, keep the lease.

Executors and monitors are agents of a session (DESIGN section 8). Each holds one `AgentLink`:

1. `register` sends the role, node and pid under the session's token and learns the agent id,
   the lease, the heartbeat interval and the coordinator's sample/telemetry endpoint (E008
   when the coordinator refuses or cannot be reached within REGISTER_TIMEOUT_S);
2. `start` follows the Commands stream on one thread, handing every command to the agent's
   `on_command` as it arrives, and renews the lease on another, sending what the agent's
   `heartbeat` callback reports;
3. when the coordinator stays unreachable for longer than the lease, `lost` is set and the
   agent's `on_lost` runs once: a lost coordinator must never leave a load generator
   hammering a shared server or a monitor sampling forever on a shared node. The agent then
   exits with EXIT_LOST.

A command stream that ends is not the end by itself: the lease decides, since a stream can
break on a network hiccup while heartbeats still get through.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from typing import Callable

import grpc

from hpcbench.common import tls
from hpcbench.common.auth import call_metadata, read_token
from hpcbench.common.errors import HpcbenchError
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.proto import control_v1_pb2_grpc as pb_grpc

REGISTER_TIMEOUT_S = 20.0
EXIT_LOST = 4   # an agent's exit status when its coordinator was lost beyond the lease

log = logging.getLogger(__name__)


def add_agent_arguments(parser, session_help: str) -> None:
    """The flags every agent takes besides --coordinator (defaults from the environment the
    coordinator's launchers set: HPCBENCH_SESSION, HPCBENCH_TOKEN_FILE)."""
    parser.add_argument("--session", default=os.environ.get("HPCBENCH_SESSION", ""),
                        help=f"{session_help} (default: $HPCBENCH_SESSION)")
    parser.add_argument("--token-file", default=os.environ.get("HPCBENCH_TOKEN_FILE", ""),
                        help="the session's control.token (default: $HPCBENCH_TOKEN_FILE, "
                             "or set HPCBENCH_TOKEN)")
    parser.add_argument("--agent-id", default="",
                        help="unique id in the session (default: assigned by the coordinator)")
    parser.add_argument("--tls-cert", default=os.environ.get("HPCBENCH_TLS_CERT", ""),
                        help="the session's control.crt when the coordinator is not on loopback "
                             "(default: $HPCBENCH_TLS_CERT)")


def session_token(token_file: str) -> str:
    """$HPCBENCH_TOKEN, else the token in `token_file` (E006 naming the file when unreadable)."""
    return os.environ.get("HPCBENCH_TOKEN") or read_token(token_file or ".")


class AgentLink:
    """One agent process's link to its coordinator (see the module docstring).

    `on_command(command)` runs on the commands thread for every command; `heartbeat()` returns
    the HeartbeatRequest fields of this moment (state, trial progress); `on_lost()` runs once
    when the lease runs out."""

    def __init__(self, address: str, token: str, role: int, *,
                 on_command: Callable[[pb.Command], None],
                 heartbeat: Callable[[], dict] = dict,
                 on_lost: Callable[[], None] = lambda: None,
                 certificate: bytes | None = None):
        self.address = address
        self.role = role
        self.metadata = call_metadata(token)
        self.lost = threading.Event()
        self.reply: pb.RegisterReply | None = None
        self._on_command = on_command
        self._heartbeat_fields = heartbeat
        self._on_lost = on_lost
        self._closed = threading.Event()
        self._channel = tls.channel(address, certificate)   # TLS pinned to the session's cert
        self.stub = pb_grpc.AgentStub(self._channel)

    @classmethod
    def from_args(cls, args: argparse.Namespace, role: int, **callbacks) -> "AgentLink":
        """A link for the --coordinator, --token-file, --tls-cert flags of
        `add_agent_arguments`."""
        cert_file = getattr(args, "tls_cert", "") or os.environ.get("HPCBENCH_TLS_CERT", "")
        certificate = tls.read_certificate(cert_file) if cert_file else None
        return cls(args.coordinator, session_token(args.token_file), role,
                   certificate=certificate, **callbacks)

    def register(self, session_id: str, agent_id: str, node: str) -> pb.RegisterReply:
        request = pb.RegisterRequest(role=self.role, agent_id=agent_id, node=node,
                                     pid=os.getpid(), session_id=session_id)
        try:
            self.reply = self.stub.Register(request, metadata=self.metadata,
                                            timeout=REGISTER_TIMEOUT_S, wait_for_ready=True)
        except grpc.RpcError as error:
            raise HpcbenchError("E008", f"cannot register with the coordinator {self.address}: "
                                f"{error.code().name}: {error.details()}",
                                ("check --coordinator, --session and the token file",)) from None
        return self.reply

    @property
    def agent_id(self) -> str:
        return self.reply.agent_id

    def start(self) -> None:
        """Follow commands and heartbeat in the background (after `register`)."""
        threading.Thread(target=self._follow_commands, name="commands", daemon=True).start()
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()

    @property
    def exit_status(self) -> int:
        """EXIT_LOST when the lease ran out, else 0."""
        return EXIT_LOST if self.lost.is_set() else 0

    def report(self, request: pb.AgentReport) -> None:
        """Send a trial report; a coordinator that does not take it within the lease is logged
        (its lease check will tell the session what happened)."""
        request.session_id = self.reply.session_id
        try:
            self.stub.Report(request, metadata=self.metadata, timeout=self.reply.lease_s)
        except grpc.RpcError as error:
            log.warning("could not report trial %s: %s", request.trial_id, error.code().name)

    def close(self) -> None:
        """End the heartbeats and the channel (the agent is done)."""
        self._closed.set()
        self._channel.close()

    def _follow_commands(self) -> None:
        try:
            for command in self.stub.Commands(pb.AgentRef(agent_id=self.reply.agent_id,
                                                          session_id=self.reply.session_id),
                                              metadata=self.metadata):
                self._on_command(command)
                if command.kind == pb.SHUTDOWN:
                    return
        except grpc.RpcError as error:
            if not self._closed.is_set():
                log.info("command stream ended: %s; the lease decides", error.code().name)

    def _heartbeat(self) -> None:
        """Renew the lease until closed; past the lease without an answer, the coordinator is
        lost."""
        lease_s, every_s = self.reply.lease_s, self.reply.heartbeat_interval_s
        last_ok = time.monotonic()
        while not self._closed.is_set():
            try:
                reply = self.stub.Heartbeat(
                    pb.HeartbeatRequest(agent_id=self.reply.agent_id,
                                        session_id=self.reply.session_id,
                                        **self._heartbeat_fields()),
                    metadata=self.metadata, timeout=every_s * 2)
                if reply.known:
                    last_ok = time.monotonic()
            except grpc.RpcError:
                pass
            if time.monotonic() - last_ok > lease_s:
                log.warning("coordinator lost beyond the lease: stopping")
                self.lost.set()
                self._on_lost()
                return
            self._closed.wait(every_s)
