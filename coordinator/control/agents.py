"""The Agent service: executors and monitors register, take commands, heartbeat under a lease.

An agent calls Register (naming the session that started it), then holds a server-streaming
Commands call open: the coordinator pushes CONFIGURE / START / STOP / SHUTDOWN down it. The agent
renews its lease with Heartbeat every `heartbeat_interval_s`; an agent silent for longer than
`lease_s` is LOST to the coordinator, and an agent that cannot reach the coordinator for
`lease_s` stops generating load by itself (executor/agent.py). Report tells the coordinator what
a command produced (a trial's counts), which is how the session knows a trial has finished.

`AgentRegistry` is one session's view of its agents; `AgentServicer` routes gRPC calls to the
registry of the agent's session.
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field

import grpc

from hpcbench.common.limits import MAX_AGENTS
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.proto import control_v1_pb2_grpc as pb_grpc

DEFAULT_LEASE_S = 5.0
DEFAULT_HEARTBEAT_S = 0.5
# MAX_AGENTS (common/limits.py): agents on one coordinator, all sessions together. Each holds
# its Commands stream on a server thread for the session's whole life, so the gRPC pool is
# sized from it (server.py) with room left for every other call.


@dataclass
class AgentRecord:
    """What the coordinator knows about one registered agent."""

    agent_id: str
    role: int
    node: str
    pid: int
    executor_index: int = -1
    state: int = pb.IDLE
    trial_id: str = ""
    requests_done: int = 0
    trial_recorded: int = 0        # the running trial's requests recorded (last heartbeat)
    trial_in_flight: int = 0       # and its requests in flight then
    last_heartbeat: float = field(default_factory=time.monotonic)
    commands: queue.Queue = field(default_factory=queue.Queue)

    def lease_age(self) -> float:
        return time.monotonic() - self.last_heartbeat


class AgentRegistry:
    """One session's agents: registration, command queues, leases and trial reports."""

    def __init__(self, session_id: str, sample_endpoint: str, executor_count: int = 0,
                 lease_s: float = DEFAULT_LEASE_S, heartbeat_interval_s: float = DEFAULT_HEARTBEAT_S):
        self.session_id = session_id
        self.sample_endpoint = sample_endpoint
        self.executor_count = executor_count
        self.monitor_count = 0     # monitors the session started (0: not known yet)
        self.lease_s = lease_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self._agents: dict[str, AgentRecord] = {}
        self._reports: dict[tuple[str, str], pb.AgentReport] = {}
        self._reported_trial = ""      # the trial whose reports are kept
        self._changed = threading.Condition()
        self._serial = itertools.count()

    # -- called by the gRPC servicer -------------------------------------------------------
    def register(self, request: pb.RegisterRequest) -> AgentRecord:
        with self._changed:
            agent_id = request.agent_id or f"{pb.AgentRole.Name(request.role).lower()}-{next(self._serial)}"
            if agent_id in self._agents and self._agents[agent_id].state != pb.GONE:
                raise ValueError(f"agent id {agent_id!r} is already registered in session "
                                 f"{self.session_id}; give each agent a unique --agent-id")
            self._check_room(request.role)
            record = AgentRecord(agent_id=agent_id, role=request.role, node=request.node,
                                 pid=request.pid)
            if request.role == pb.EXECUTOR:
                record.executor_index = sum(1 for agent in self._agents.values()
                                            if agent.role == pb.EXECUTOR)
            self._agents[agent_id] = record
            self._changed.notify_all()
            return record

    def _check_room(self, role: int) -> None:
        """Refuse an agent the session did not start: more executors or monitors than it
        launched (once it knows how many), or more agents than any session has."""
        planned = {pb.EXECUTOR: self.executor_count, pb.MONITOR: self.monitor_count}.get(role, 0)
        live = sum(1 for agent in self._agents.values()
                   if agent.role == role and agent.state != pb.GONE)
        if (planned and live >= planned) or len(self._agents) >= MAX_AGENTS:   # MAX: any session
            raise OverflowError(f"session {self.session_id} started {planned or len(self._agents)} "
                                f"{pb.AgentRole.Name(role).lower()}(s) and all of them are "
                                "registered; an agent it did not start cannot join")

    def live_agents(self) -> int:
        with self._changed:
            return sum(1 for agent in self._agents.values() if agent.state != pb.GONE)

    def knows(self, agent_id: str) -> bool:
        with self._changed:
            return agent_id in self._agents

    def heartbeat(self, request: pb.HeartbeatRequest) -> bool:
        with self._changed:
            record = self._agents.get(request.agent_id)
            if record is None or record.state == pb.GONE:
                return False
            record.last_heartbeat = time.monotonic()
            record.state = request.state or record.state
            record.trial_id = request.trial_id
            record.requests_done = request.requests_done
            record.trial_recorded = request.trial_recorded
            record.trial_in_flight = request.trial_in_flight
            self._changed.notify_all()
            return True

    def report(self, request: pb.AgentReport) -> None:
        """Keep a report on the trial the session configured last (one per agent); a report on
        any other trial, or from an agent the session does not know, is not kept, so reports
        never pile up over a session."""
        with self._changed:
            if request.trial_id == self._reported_trial and request.agent_id in self._agents:
                self._reports[(request.agent_id, request.trial_id)] = request
            record = self._agents.get(request.agent_id)
            if record is not None:
                record.last_heartbeat = time.monotonic()
            self._changed.notify_all()

    def command_stream(self, agent_id: str, context: grpc.ServicerContext):
        """Yield the agent's commands until SHUTDOWN or until the agent hangs up."""
        record = self._agents[agent_id]
        while context.is_active():
            try:
                command = record.commands.get(timeout=0.2)
            except queue.Empty:
                continue
            yield command
            if command.kind == pb.SHUTDOWN:
                return

    # -- called by the session -------------------------------------------------------------
    def agents(self, role: int | None = None) -> list[AgentRecord]:
        with self._changed:
            return [agent for agent in self._agents.values() if role in (None, agent.role)]

    def send(self, agent_id: str, kind: int, trial_id: str = "", config_json: str = "") -> None:
        if kind == pb.CONFIGURE and trial_id != self._reported_trial:
            with self._changed:   # a new trial: only its reports are kept from now on
                self._reported_trial = trial_id
                self._reports.clear()
        self._agents[agent_id].commands.put(pb.Command(kind=kind, trial_id=trial_id,
                                                       config_json=config_json))

    def shutdown_all(self) -> None:
        for agent in self.agents():
            if agent.state != pb.GONE:
                self.send(agent.agent_id, pb.SHUTDOWN)
                agent.state = pb.GONE

    def wait_for_agents(self, role: int, count: int, timeout_s: float, abort=lambda: None) -> list[AgentRecord]:
        """Block until `count` agents of `role` registered; `abort()` may raise to give up early."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = [agent for agent in self._agents.values() if agent.role == role]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(found)} of {count} {pb.AgentRole.Name(role).lower()}"
                                       f"s registered within {timeout_s:.0f}s")
                self._changed.wait(min(remaining, 0.2))
                abort()

    def wait_reports(self, trial_id: str, agent_ids: list[str], timeout_s: float,
                     abort=lambda: None) -> dict[str, pb.AgentReport]:
        """Block until every agent reported on `trial_id`; agents whose lease ran out are skipped.

        Returns the reports received; a LOST agent simply has none (the caller decides).
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                self._mark_lost()
                reports = {agent_id: self._reports[(agent_id, trial_id)] for agent_id in agent_ids
                           if (agent_id, trial_id) in self._reports}
                pending = [agent_id for agent_id in agent_ids if agent_id not in reports
                           and self._agents[agent_id].state != pb.LOST]
                if not pending:
                    return reports
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no trial report from {', '.join(pending)} within "
                                       f"{timeout_s:.0f}s")
                self._changed.wait(min(remaining, 0.2))
                abort()

    def mark_lost(self, agent_id: str) -> None:
        """The agent is known to be gone (its process died): do not wait for its lease."""
        with self._changed:
            record = self._agents.get(agent_id)
            if record is not None and record.state != pb.GONE:
                record.state = pb.LOST
            self._changed.notify_all()

    def lost_agents(self) -> list[AgentRecord]:
        with self._changed:
            self._mark_lost()
            return [agent for agent in self._agents.values() if agent.state == pb.LOST]

    def _mark_lost(self) -> None:
        for agent in self._agents.values():
            if agent.state not in (pb.GONE, pb.LOST) and agent.lease_age() > self.lease_s:
                agent.state = pb.LOST

    def info(self) -> list[pb.AgentInfo]:
        with self._changed:
            self._mark_lost()
            return [pb.AgentInfo(agent_id=agent.agent_id, role=agent.role, node=agent.node,
                                 state=agent.state, last_heartbeat_age_s=agent.lease_age())
                    for agent in self._agents.values()]


class AgentServicer(pb_grpc.AgentServicer):
    """Routes Agent calls to the registry of the session the agent belongs to. Agent ids are
    unique within a session (every session has its executor-0), so every call names both."""

    def __init__(self):
        self._registries: dict[str, AgentRegistry] = {}
        self._lock = threading.Lock()

    def add_registry(self, registry: AgentRegistry) -> None:
        with self._lock:
            self._registries[registry.session_id] = registry

    def remove_registry(self, registry: AgentRegistry) -> None:
        """Forget a finished session's agents (a daemon must not grow with every session)."""
        with self._lock:
            if self._registries.get(registry.session_id) is registry:
                del self._registries[registry.session_id]

    def _registry(self, session_id: str) -> AgentRegistry | None:
        with self._lock:
            return self._registries.get(session_id)

    def _registry_of(self, session_id: str, agent_id: str, context) -> AgentRegistry:
        registry = self._registry(session_id)
        if registry is None or not registry.knows(agent_id):
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"agent {agent_id!r} of session {session_id!r} is not registered: "
                          "call Register first")
        return registry

    def Register(self, request, context):
        registry = self._registry(request.session_id)
        if registry is None:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"no session {request.session_id!r} on this coordinator: pass the "
                          f"--session that started this agent")
        with self._lock:
            live = sum(registry.live_agents() for registry in self._registries.values())
        if live >= MAX_AGENTS:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"this coordinator already serves {MAX_AGENTS} agents, its limit; run "
                          "fewer executors per session or fewer sessions at once")
        try:
            record = registry.register(request)
        except OverflowError as error:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        except ValueError as error:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, str(error))
        return pb.RegisterReply(agent_id=record.agent_id, session_id=registry.session_id,
                                lease_s=registry.lease_s,
                                heartbeat_interval_s=registry.heartbeat_interval_s,
                                sample_endpoint=registry.sample_endpoint,
                                executor_index=record.executor_index,
                                executor_count=registry.executor_count)

    def Commands(self, request, context):
        registry = self._registry_of(request.session_id, request.agent_id, context)
        yield from registry.command_stream(request.agent_id, context)

    def Heartbeat(self, request, context):
        registry = self._registry(request.session_id)
        known = registry is not None and registry.heartbeat(request)
        lease = registry.lease_s if registry else DEFAULT_LEASE_S
        return pb.HeartbeatReply(lease_s=lease, known=known)

    def Report(self, request, context):
        self._registry_of(request.session_id, request.agent_id, context).report(request)
        return pb.ReportReply()
