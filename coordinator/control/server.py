"""The coordinator's gRPC server: Control (external tools) + Agent (executors, monitors).

`Coordinator` owns one gRPC server bound to a loopback or cluster address, serving
hpcbench.control.v1.Control and .Agent behind the token check of `auth.TokenInterceptor`, plus
the standard grpc.health.v1 (Check open, for probes) and reflection (with the token, e.g.
for grpcurl) services. It holds
the sessions it started; each runs in its own thread (coordinator/session/lifecycle.py).

Next to the token it writes `coordinator.json` (address, pid) into its run directory so the
CLI and agents can find it: `hpcbench status --run-dir DIR` needs nothing else.
"""
from __future__ import annotations

import json
import os
import threading
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hpcbench.common import tls
from hpcbench.common.auth import TOKEN_FILE, TokenInterceptor, create_token, write_token
from hpcbench.common.errors import HpcbenchError, config_error
from hpcbench.common.files import check_private_dir, write_atomic, write_private
from hpcbench.common.ids import check_id
from hpcbench.common.limits import MAX_AGENTS, MAX_PORT
from hpcbench.coordinator.control.agents import AgentServicer
from hpcbench.coordinator.control.client import ADDRESS_FILE
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.proto import control_v1_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from hpcbench.coordinator.session.lifecycle import Session
SERVICE_NAMES = (pb.DESCRIPTOR.services_by_name["Control"].full_name,
                 pb.DESCRIPTOR.services_by_name["Agent"].full_name)


MAX_WATCHERS = 64   # Watch streams per session: each holds a server thread while it lasts
CALL_THREADS = 1024  # server threads beyond the agents' streams: watchers, status, reports
MAX_RUNNING_SESSIONS = 8    # at once on one coordinator; each runs servers and executors
MAX_KEPT_SESSIONS = 100     # finished ones answered by Status/Results; older ones are forgotten


def write_address_file(run_dir: Path, info: dict) -> None:
    """coordinator.json (where the coordinator listens): private, like the token."""
    write_private(Path(run_dir) / ADDRESS_FILE, json.dumps(info, indent=2) + "\n")


class Coordinator:
    """gRPC server plus the sessions it runs. `start()`, then `start_session(...)`, `stop()`."""

    def __init__(self, run_dir: Path, host: str = "127.0.0.1", port: int = 0,
                 results_root: Path | None = None,
                 max_workers: int = MAX_AGENTS + CALL_THREADS,
                 bind: str | None = None):
        """`host`: the address clients and agents reach the control port by; it listens
        there, or on `bind` (e.g. 0.0.0.0, a recipe's security.bind_address) when given.
        Off loopback the port speaks TLS with a certificate made for this run (common/tls.py)."""
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= MAX_PORT:
            # checked before the run dir exists: gRPC took 70000 as port 4464 without a word
            raise config_error(f"--port {port!r} is not a TCP port",
                               [f"fix: a port from 1 to {MAX_PORT}, or 0 for a free one"])
        self.run_dir = Path(run_dir)
        check_private_dir(self.run_dir)
        self.host = host
        self.results_root = results_root
        self.token = create_token(self.run_dir)
        self.token_file = self.run_dir / TOKEN_FILE
        self.tls = not (tls.is_loopback(host) and tls.is_loopback(bind or host))
        self.certificate: bytes | None = None
        self.sessions: dict[str, "Session"] = {}
        self._lock = threading.Lock()
        self.agents = AgentServicer()
        self.token_check = TokenInterceptor(self.token)
        # every agent holds its Commands stream (and every watcher its Watch) on a server thread
        # for the whole session: size the pool for hundreds of executors, threads idle cheaply
        # calls beyond max_workers are refused at once (RESOURCE_EXHAUSTED), not queued
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                              thread_name_prefix="grpc"),
                                   interceptors=[self.token_check],
                                   maximum_concurrent_rpcs=max_workers)
        pb_grpc.add_ControlServicer_to_server(ControlServicer(self), self._server)
        pb_grpc.add_AgentServicer_to_server(self.agents, self._server)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server)
        try:
            if self.tls:
                self.certificate, key = tls.create_identity(self.run_dir)
                self.port = self._server.add_secure_port(
                    f"{bind or host}:{port}", tls.server_credentials(self.certificate, key))
            else:
                self.port = self._server.add_insecure_port(f"{bind or host}:{port}")
        except RuntimeError:   # grpcio >= 1.60 raises where older versions returned 0
            self.port = 0
        if self.port == 0:
            raise HpcbenchError("E008", f"cannot bind the control port on {bind or host}:{port}",
                                ("fix: choose a free --port or an address of this node",))
        self.address = f"{host}:{self.port}"

    def start(self) -> "Coordinator":
        self._server.start()
        for name in ("", *SERVICE_NAMES):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        write_address_file(self.run_dir, {"control": self.address, "pid": os.getpid(),
                                          "tls": self.tls})
        return self

    def stop(self, grace_s: float = 2.0) -> None:
        """Stop every session (each keeps what it measured), then the server."""
        for session in list(self.sessions.values()):
            session.stop("coordinator shutting down")
        for session in list(self.sessions.values()):
            session.wait(timeout_s=30)
        self._health.enter_graceful_shutdown()
        self._server.stop(grace_s).wait()

    def start_session(self, recipe_text: str | None = None, recipe_path: str | None = None,
                      session_id: str | None = None, **options) -> "Session":
        """Create a session and run it in its own thread. `options` go to Session, e.g.
        run.sbatch's `launcher` that starts the components as srun steps on Slurm nodes."""
        from hpcbench.coordinator.session.lifecycle import Session, load_recipe_source, new_session_id

        if session_id is not None:   # it names the run directory: refused before anything
            check_id(session_id, "session id")
        load_recipe_source(recipe_text, recipe_path)   # a bad recipe is refused here, E006
        session_id = session_id or new_session_id()
        with self._lock:
            running = self.sessions.get(session_id)
            if running is not None and not running.finished:
                raise HpcbenchError("E006", f"session {session_id!r} is still running",
                                    ("fix: stop it first, or pick another --session id",))
            if sum(not known.finished for known in self.sessions.values()) >= MAX_RUNNING_SESSIONS:
                raise HpcbenchError("E005", f"this coordinator already runs {MAX_RUNNING_SESSIONS} "
                                    "sessions", ("fix: wait for one to end or stop one",))
            self._forget_old_sessions()
            session = Session(session_id, recipe_text=recipe_text, recipe_path=recipe_path,
                              coordinator=self, **options)
            self.sessions[session_id] = session
        self.agents.add_registry(session.registry)
        session.start()
        return session

    def _forget_old_sessions(self) -> None:
        """Keep at most MAX_KEPT_SESSIONS finished sessions (their results stay on disk)."""
        finished = [known for known in self.sessions.values() if known.finished]
        for old in finished[:max(len(finished) - MAX_KEPT_SESSIONS + 1, 0)]:
            del self.sessions[old.session_id]
            self.agents.remove_registry(old.registry)

    def session_ready(self, session: "Session") -> None:
        """Called by a session once it knows its run directory: put the way in there too."""
        check_private_dir(session.run_dir)
        token_copy = session.run_dir / TOKEN_FILE
        if token_copy.resolve() != self.token_file.resolve():
            write_token(token_copy, self.token)
            if self.certificate is not None:
                write_atomic(session.run_dir / tls.CERT_FILE, self.certificate)
        write_address_file(session.run_dir, {"control": self.address, "pid": os.getpid(),
                                             "session": session.session_id,
                                             "bus": session.bus_endpoint, "tls": self.tls})

    def find(self, session_id: str, context: grpc.ServicerContext) -> "Session":
        with self._lock:
            if not session_id and self.sessions:
                return list(self.sessions.values())[-1]
            session = self.sessions.get(session_id)
        if session is None:
            known = ", ".join(self.sessions) or "none"
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"no session {session_id!r} on this coordinator (known: {known})")
        return session


class ControlServicer(pb_grpc.ControlServicer):
    """The Control API; every method maps onto a Session."""

    def __init__(self, coordinator: Coordinator):
        self.coordinator = coordinator

    def StartSession(self, request, context):
        which = request.WhichOneof("recipe")
        if which is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "StartSession needs recipe_yaml (the recipe text) or recipe_path")
        try:
            session = self.coordinator.start_session(
                recipe_text=request.recipe_yaml if which == "recipe_yaml" else None,
                recipe_path=request.recipe_path if which == "recipe_path" else None,
                session_id=request.session_id or None)
        except HpcbenchError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT if error.code == "E006"
                          else grpc.StatusCode.FAILED_PRECONDITION, error.render())
        return session.status()

    def Status(self, request, context):
        return self.coordinator.find(request.session_id, context).status()

    def List(self, request, context):
        sessions = list(self.coordinator.sessions.values())[::-1]
        return pb.ListReply(sessions=[session.status() for session in sessions])

    def Stop(self, request, context):
        session = self.coordinator.find(request.session_id, context)
        session.stop(request.reason or "stopped over the control API")
        return session.status()

    def Watch(self, request, context):
        session = self.coordinator.find(request.session_id, context)
        if not session.feed.add_watcher(MAX_WATCHERS):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"session {session.session_id} already has {MAX_WATCHERS} watchers; "
                          "subscribe to its metrics bus instead (docs/bus.md)")
        try:
            yield pb.WatchEvent(status=session.status())
            for snapshot, closed in session.feed.follow(request.max_rate_hz, context.is_active):
                if snapshot is not None:
                    yield pb.WatchEvent(snapshot=session.snapshot_message(snapshot))
                yield pb.WatchEvent(status=session.status())
                if closed:
                    return
        finally:
            session.feed.remove_watcher()

    def Results(self, request, context):
        return self.coordinator.find(request.session_id, context).results()
