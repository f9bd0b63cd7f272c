"""A session on the login node, and the way to its coordinator through the SSH connection.

A batch job writes its session under <remote dir>/<results dir>/<scenario>/<job id> (the
session id of a Slurm job is its job id). The coordinator runs on a compute node and listens on
that node's cluster address, which the login node reaches: each port the laptop needs (control,
metrics bus, Prometheus endpoints) is a local forward `127.0.0.1:LOCAL -> node:PORT` on the one
multiplexed connection. The session's secrets (control.token, the pinned control.crt,
curve.keys) are read over SSH into memory and never written on the laptop; TLS checks the
certificate's fixed name, not the address dialled, so it holds through the tunnel.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from hpcbench.common.auth import TOKEN_FILE
from hpcbench.common.curve import KEYS_FILE, CurveKeys
from hpcbench.common.errors import HpcbenchError, config_error
from hpcbench.common.ids import check_id
from hpcbench.common.tls import CERT_FILE
from hpcbench.coordinator.control.client import ADDRESS_FILE, Target
from hpcbench.coordinator.remote.ssh import SshConnection, check_remote_program, remote_path
from hpcbench.coordinator.session.session_file import ENDED, SESSION_FILE

JOB_FILE = "job.json"
PROMETHEUS_PORT_FILE = "prometheus.port"


class JobNotStarted(HpcbenchError):
    """The Slurm job is known but has no session directory yet (pending, or just starting)."""

    def __init__(self, host: str, job_id: str, state: str):
        super().__init__("E008", f"Slurm job {job_id} on {host} is {state.lower()} and has no "
                         "session directory yet", ("wait until it runs (`hpcbench watch` waits "
                                                   "for it, up to --wait-start S)",))
        self.state = state


@dataclass(frozen=True)
class Endpoint:
    """A port on the cluster and the local port that reaches it through the tunnel."""

    name: str
    remote: str         # host:port as the login node reaches it
    local_port: int


class RemoteSession:
    """One session's run directory on the login node, read through `ssh`."""

    def __init__(self, ssh: SshConnection, run_dir: str):
        self.ssh = ssh
        self.run_dir = run_dir                     # as the login node's shell sees it
        self.scenario, self.session_id = run_dir.rstrip("/").split("/")[-2:]

    def __str__(self) -> str:
        return f"{self.ssh.host}:{self.run_dir}"

    def read(self, name: str) -> bytes | None:
        return self.ssh.read_file(shlex.quote(f"{self.run_dir}/{name}"))

    def read_json(self, name: str) -> dict:
        raw = self.read(name)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def record(self) -> dict:
        """session.json: what the session recorded (state, trials), {} before it exists."""
        return self.read_json(SESSION_FILE)

    def ended(self) -> bool:
        """The session recorded its end, or its batch job did (job.json: a job that failed
        before its session started has no session record)."""
        return (self.record().get("state") in ENDED
                or self.read_json(JOB_FILE).get("finished_at") is not None)

    def coordinator(self) -> dict:
        """coordinator.json: where the coordinator listens; {} while it has not started."""
        return self.read_json(ADDRESS_FILE)

    def final_state(self, hpcbench: str, as_json: bool = False) -> str:
        """What `hpcbench status` on the login node says of the session (it reads the
        session's record and its Slurm job there)."""
        check_remote_program(self.ssh, hpcbench)
        shown = self.ssh.run(f"{shlex.quote(hpcbench)} status --run-dir "
                             f"{shlex.quote(self.run_dir)}{' --json' if as_json else ''} 2>&1")
        return shown.stdout.decode(errors="replace").rstrip()

    def target(self) -> Target:
        """The coordinator's control port and metrics bus, forwarded to local ports, with the
        session's token and certificate (in memory). E008 when no coordinator is recorded."""
        info = self.coordinator()
        control = info.get("control")
        if not isinstance(control, str) or ":" not in control:
            raise HpcbenchError("E008", f"no running coordinator recorded in {self}",
                                ("the job may still be pending or starting: `hpcbench status "
                                 f"--remote {self.ssh.host} --session {self.session_id}`",))
        token = (self.read(TOKEN_FILE) or b"").decode().strip()
        if not token:
            raise config_error(f"cannot read {self}/{TOKEN_FILE}",
                               ["fix: connect as the user who submitted the session"])
        certificate = self.read(CERT_FILE) if info.get("tls") is True else None
        target = Target(address=f"127.0.0.1:{self._forward(control)}", token=token,
                        session_id=self.session_id, certificate=certificate)
        bus = info.get("bus")
        if isinstance(bus, str) and bus.startswith("tcp://"):
            target.bus_endpoint = f"tcp://127.0.0.1:{self._forward(bus[len('tcp://'):])}"
        return target

    def curve_keys(self) -> CurveKeys | None:
        """The session's CURVE keys when its bus is on CURVE (in memory), else None."""
        raw = self.read(KEYS_FILE)
        if not raw:
            return None
        try:
            return CurveKeys(**json.loads(raw))
        except (ValueError, TypeError):
            raise config_error(f"{self}/{KEYS_FILE} is not a CURVE key file written by "
                               "hpcbench") from None

    def prometheus_endpoints(self, coordinator_port: int = 0) -> list[Endpoint]:
        """The coordinator's Prometheus endpoint and every monitor's, forwarded to local ports
        (`coordinator_port`: a chosen local port for the coordinator's, e.g. 9400 for the
        laptop stack's prometheus.yml; 0: any free one)."""
        found = []
        control = self.coordinator().get("control")
        port = _port(self.read(PROMETHEUS_PORT_FILE))
        if isinstance(control, str) and port:
            remote = f"{control.rsplit(':', 1)[0]}:{port}"
            found.append(Endpoint("coordinator", remote,
                                  self._forward(remote, coordinator_port)))
        addresses = self.read_json(JOB_FILE).get("addresses") or {}
        listed = self.ssh.run(f"cd {shlex.quote(self.run_dir)}/telemetry 2>/dev/null && "
                              "ls -1 -- *.prometheus.port 2>/dev/null")
        for name in listed.stdout.decode(errors="replace").split():
            node = name[:-len(".prometheus.port")]
            port = _port(self.read(f"telemetry/{name}"))
            host = addresses.get(node) if isinstance(addresses, dict) else None
            if port and isinstance(host, str):
                remote = f"{host}:{port}"
                found.append(Endpoint(f"monitor {node}", remote, self._forward(remote)))
        return found

    def _forward(self, address: str, local_port: int = 0) -> int:
        host, _, port = address.rpartition(":")
        if not port.isdigit():
            raise config_error(f"{self}: {address!r} is not HOST:PORT")
        return self.ssh.forward_from(local_port, host.strip("[]"), int(port))


def _port(raw: bytes | None) -> int:
    text = (raw or b"").decode(errors="replace").strip()
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else 0


def find_session(ssh: SshConnection, remote_dir: str, results_dir: str = "results",
                 session: str | None = None, job: str | None = None) -> RemoteSession:
    """The session `session` (or the session of Slurm job `job`, whose id it is), else the
    newest, under <remote_dir>/<results_dir>/ on the login node. A job still pending (no
    session directory yet) is E008 saying so; an unknown one E006."""
    wanted = session or job
    if wanted:
        check_id(wanted, "--session" if session else "--job")
    results = results_dir if results_dir.startswith("/") else f"{remote_dir}/{results_dir}"
    pattern = f"{remote_path(results)}/*/{wanted or '*'}/"
    found = ssh.run(f"ls -1dt -- {pattern} 2>/dev/null | head -n 1")
    run_dir = found.stdout.decode(errors="replace").strip()
    if run_dir:
        return RemoteSession(ssh, run_dir.rstrip("/"))
    if wanted:
        state = job_state(ssh, wanted)
        if state:
            raise JobNotStarted(ssh.host, wanted, state)
    raise config_error(f"no session {wanted or ''} under {ssh.host}:{results}/".replace("  ", " "),
                       [f"fix: give --session/--job of a session submitted to {ssh.host}, and "
                        "--remote-dir/--results-dir if it was submitted elsewhere "
                        f"(`ssh {ssh.host} ls {results}` lists them)"])


def job_state(ssh: SshConnection, job_id: str) -> str:
    """The job's Slurm state on the login node (PENDING, RUNNING...), '' when Slurm no longer
    knows it."""
    shown = ssh.run(f"squeue -h -j {shlex.quote(job_id)} -o %T 2>/dev/null")
    return shown.stdout.decode(errors="replace").strip()
