"""The monitor's side of the Agent service: register, heartbeat under the lease, obey STOP.

`hpcbench-monitor --coordinator HOST:PORT` (with the session and token the way executors get
them: --session / --token-file, else $HPCBENCH_SESSION and $HPCBENCH_TOKEN or
$HPCBENCH_TOKEN_FILE) registers as a MONITOR agent of the session, so the coordinator's status
lists it with its node and heartbeat age and marks it LOST when its heartbeats stop. The link

1. registers and learns the lease and the coordinator's telemetry endpoint (used when
   --coordinator-telemetry is not given);
2. follows the Commands stream: STOP or SHUTDOWN end the sampling (the CSV's last row is
   written and the file closed, the Pushgateway gets its final push); CONFIGURE and START are
   ignored, since a monitor samples from registration to its end whatever the trial;
3. renews the lease with heartbeats. When the coordinator stays unreachable for longer than the
   lease, the monitor ends by itself with `EXIT_LOST` (DESIGN section 8), as executors do:
   a lost coordinator must not leave monitors sampling forever on a shared node.

The register/heartbeat lines mirror executor/agent.py's (kept apart on purpose: the monitor
must not import the load generator).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import grpc

from hpcbench.common.auth import call_metadata, read_token
from hpcbench.common.errors import HpcbenchError, config_error
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.proto import control_v1_pb2_grpc as pb_grpc

REGISTER_TIMEOUT_S = 20.0
EXIT_LOST = 4   # the coordinator was lost beyond the lease (the executor's status for it too)


class AgentLink:
    """One monitor process's conversation with its coordinator.

    `stop` is set when the sampling must end (STOP, SHUTDOWN or the lease ran out); `lost`
    tells the last case apart."""

    def __init__(self, address: str, metadata, stop: threading.Event):
        self.address = address
        self.metadata = metadata
        self.stop = stop
        self.lost = threading.Event()
        self._channel = grpc.insecure_channel(address)
        self._stub = pb_grpc.AgentStub(self._channel)
        self.reply: pb.RegisterReply | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, stop: threading.Event) -> "AgentLink":
        if not args.session:
            raise config_error("--coordinator needs the session id: pass --session ID or set "
                               "HPCBENCH_SESSION")
        token = os.environ.get("HPCBENCH_TOKEN") or read_token(args.token_file or ".")
        return cls(args.coordinator, call_metadata(token), stop)

    def register(self, session_id: str, agent_id: str, node: str) -> pb.RegisterReply:
        """Register as a MONITOR of `session_id` (E008 when the coordinator refuses or cannot
        be reached within REGISTER_TIMEOUT_S)."""
        request = pb.RegisterRequest(role=pb.MONITOR, agent_id=agent_id, node=node,
                                     pid=os.getpid(), session_id=session_id)
        try:
            self.reply = self._stub.Register(request, metadata=self.metadata,
                                             timeout=REGISTER_TIMEOUT_S, wait_for_ready=True)
        except grpc.RpcError as error:
            raise HpcbenchError("E008", f"cannot register with the coordinator {self.address}: "
                                f"{error.code().name}: {error.details()}",
                                ("check --coordinator, --session and the token file",)) from None
        return self.reply

    def start(self) -> None:
        """Follow commands and heartbeat in the background (after `register`)."""
        threading.Thread(target=self._follow_commands, name="commands", daemon=True).start()
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()

    @property
    def exit_status(self) -> int:
        """The monitor's exit status: EXIT_LOST when the lease ran out, else 0."""
        return EXIT_LOST if self.lost.is_set() else 0

    def close(self) -> None:
        self._channel.close()

    def _follow_commands(self) -> None:
        try:
            for command in self._stub.Commands(pb.AgentRef(agent_id=self.reply.agent_id),
                                               metadata=self.metadata):
                if command.kind in (pb.STOP, pb.SHUTDOWN):
                    _say(f"{pb.CommandKind.Name(command.kind)} from the coordinator: stopping")
                    self.stop.set()
                    return
        except grpc.RpcError as error:
            if not self.stop.is_set():
                _say(f"command stream ended: {error.code().name}; the lease decides")

    def _heartbeat(self) -> None:
        """Renew the lease until the sampling ends; past the lease without an answer, end it."""
        lease_s, every_s = self.reply.lease_s, self.reply.heartbeat_interval_s
        last_ok = time.monotonic()
        while not self.stop.is_set():
            try:
                reply = self._stub.Heartbeat(
                    pb.HeartbeatRequest(agent_id=self.reply.agent_id, state=pb.BUSY),
                    metadata=self.metadata, timeout=every_s * 2)
                if reply.known:
                    last_ok = time.monotonic()
            except grpc.RpcError:
                pass
            if time.monotonic() - last_ok > lease_s:
                _say("coordinator lost beyond the lease: stopping")
                self.lost.set()
                self.stop.set()
                return
            self.stop.wait(every_s)


def _say(line: str) -> None:
    print(f"hpcbench-monitor: {line}", file=sys.stderr, flush=True)
