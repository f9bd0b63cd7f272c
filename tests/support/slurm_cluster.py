"""A real 3-node Slurm cluster on this one machine, for the Slurm suites (needs root).

Facts this relies on (DESIGN.md section 9): each node is a network namespace joined to a bridge
we create on a private subnet; one `slurmd -N nodeK` per namespace, started with
`nsenter --net=/var/run/netns/NAME` (`ip netns exec` remounts /sys and slurmd then finds no
cgroup fs); a private `munged` started first; no cgroup.conf, proctrack/linuxproc, task/none;
`NodeAddr` is the namespace's address and slurmctld listens on the bridge address in the root
namespace. All nodes share the filesystem (so the repo's .venv works on every node) and the
hostname (so code must find peers by Slurm node name and address).

Several test sessions may run at once (CI and developers): each cluster claims a free index
with a lock file, and every name (bridge, namespaces, subnet, cluster) derives from it. Traffic
only goes to the addresses created here.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from support.waiting import wait_until

REQUIRED_PROGRAMS = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "squeue", "scontrol",
                     "sinfo", "scancel", "nsenter", "ip")
NODE_COUNT = 3
CPUS_PER_NODE = 4
FIRST_INDEX, LAST_INDEX = 213, 240  # subnet 10.<index>.0.0/24, one index per live cluster
LOCK_DIR = Path("/run/hpcbench-vcluster")


def unavailable_reason() -> str | None:
    """Why a virtual cluster cannot be built here, or None when it can."""
    if os.geteuid() != 0:
        return "the virtual Slurm cluster needs root (network namespaces); run `make test` as root"
    missing = [name for name in REQUIRED_PROGRAMS if shutil.which(name) is None]
    if missing:
        return (f"missing {' '.join(missing)}: install the Debian packages slurm-wlm, munge and "
                "iproute2 (`make system-deps` as root)")
    return None


@dataclass(frozen=True)
class VirtualNode:
    """One Slurm node: its Slurm name, network namespace and address on the bridge."""

    name: str
    netns: str
    address: str


def _run(argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, **kwargs)


@dataclass
class VirtualCluster:
    """Build, use and tear down one virtual cluster; `start()` then `stop()` (always)."""

    workdir: Path
    index: int = 0
    nodes: list[VirtualNode] = field(default_factory=list)
    controller_address: str = ""
    _daemons: list[subprocess.Popen] = field(default_factory=list)
    _lock_file: object = None

    # ---- names -------------------------------------------------------------------------------
    @property
    def bridge(self) -> str:
        return f"hpcb{self.index}br"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment for Slurm client commands (sbatch, srun, squeue...) aimed at this cluster."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf_path)
        for name in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
            del env[name]  # never inherit an outer job's allocation
        return env

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> "VirtualCluster":
        self._claim_index()
        self._remove_leftovers()
        self._build_network()
        self._write_config()
        self._start_munge()
        self._start_controller()
        for node in self.nodes:
            self._start_slurmd(node)
        wait_until(self._all_idle, timeout=timeout, interval=0.2,
                   what=f"sinfo to show {NODE_COUNT} idle nodes (logs in {self.workdir})")
        return self

    def stop(self) -> None:
        """Cancel every job, stop the daemons, kill what is left in the namespaces, delete them."""
        if self._daemons:
            self.slurm(["scancel", "--full", "--user=root"], check=False)
            try:
                wait_until(lambda: not self.slurm(["squeue", "-h"], check=False).stdout.strip(),
                           timeout=20, interval=0.2, what="squeue to empty")
            except AssertionError:
                pass  # the daemons are stopped below; their jobs' processes are killed after
        for daemon in reversed(self._daemons):
            _terminate(daemon)
        self._daemons.clear()
        self._remove_leftovers()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # ---- helpers for tests -------------------------------------------------------------------
    def slurm(self, argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run a Slurm client command against this cluster (from the root namespace)."""
        kwargs.setdefault("env", self.env)
        kwargs.setdefault("timeout", 60)
        return _run(argv, check=check, **kwargs)

    def node(self, name: str) -> VirtualNode:
        return next(node for node in self.nodes if node.name == name)

    def job_state(self, job_id: str) -> str:
        """The job's state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED...)."""
        shown = self.slurm(["scontrol", "show", "job", "-o", job_id], check=False).stdout
        for item in shown.split():
            if item.startswith("JobState="):
                return item.split("=", 1)[1]
        return "UNKNOWN"

    def wait_finished(self, job_id: str, timeout: float = 120.0) -> str:
        """Wait until the job has left the running states; return its final state."""
        return wait_until(
            lambda: (state := self.job_state(job_id)) not in
            ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED") and state,
            timeout=timeout, interval=0.2, what=f"job {job_id} to finish")

    def job_processes(self, node: VirtualNode) -> list[str]:
        """Command lines of processes in the node's namespace other than its slurmd."""
        pids = _run(["ip", "netns", "pids", node.netns], check=False).stdout.split()
        found = []
        for pid in pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "slurmd" not in cmdline.split(" ", 1)[0]:
                found.append(f"{pid}: {cmdline.strip()}")
        return found

    def tcp_peers(self, node: VirtualNode, port: int) -> set[str]:
        """Addresses with an established TCP connection to `port` on the node (via `ss`)."""
        shown = _run(["nsenter", f"--net=/var/run/netns/{node.netns}", "ss", "-Htn",
                      "state", "established", f"( sport = :{port} )"], check=False).stdout
        return {line.split()[-1].rsplit(":", 1)[0] for line in shown.splitlines() if line.strip()}

    # ---- building ----------------------------------------------------------------------------
    def _claim_index(self) -> None:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        for index in range(FIRST_INDEX, LAST_INDEX + 1):
            handle = open(LOCK_DIR / f"{index}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self.index, self._lock_file = index, handle
            break
        else:
            raise RuntimeError(f"no free virtual cluster index in {FIRST_INDEX}..{LAST_INDEX}")
        self.controller_address = f"10.{self.index}.0.1"
        self.nodes = [VirtualNode(f"node{k}", f"hpcb{self.index}n{k}", f"10.{self.index}.0.{10 + k}")
                      for k in range(1, NODE_COUNT + 1)]

    def _remove_leftovers(self) -> None:
        """Kill processes in, and delete, this index's namespaces and links (ours or a crashed run's)."""
        for k in range(1, NODE_COUNT + 1):
            netns = f"hpcb{self.index}n{k}"
            if not Path(f"/var/run/netns/{netns}").exists():
                continue
            for pid in _run(["ip", "netns", "pids", netns], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            wait_until(lambda netns=netns: not _run(["ip", "netns", "pids", netns], check=False).stdout.split(),
                       timeout=10, what=f"processes in {netns} to exit")
            _run(["ip", "netns", "delete", netns], check=False)
        for k in range(1, NODE_COUNT + 1):
            _run(["ip", "link", "delete", f"hpcb{self.index}v{k}"], check=False)
        _run(["ip", "link", "delete", self.bridge], check=False)

    def _build_network(self) -> None:
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.controller_address}/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])
        for k, node in enumerate(self.nodes, start=1):
            outside, inside = f"hpcb{self.index}v{k}", f"hpcb{self.index}p{k}"
            _run(["ip", "netns", "add", node.netns])
            _run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside])
            _run(["ip", "link", "set", outside, "master", self.bridge])
            _run(["ip", "link", "set", outside, "up"])
            _run(["ip", "link", "set", inside, "netns", node.netns])
            in_ns = ["ip", "-n", node.netns]
            _run([*in_ns, "link", "set", inside, "name", "eth0"])
            _run([*in_ns, "addr", "add", f"{node.address}/24", "dev", "eth0"])
            _run([*in_ns, "link", "set", "eth0", "up"])
            _run([*in_ns, "link", "set", "lo", "up"])

    def _write_config(self) -> None:
        for sub in ("state", "spool", "munge"):
            (self.workdir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        key = self.workdir / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        node_lines = "\n".join(
            f"NodeName={n.name} NodeAddr={n.address} NodeHostname={socket.gethostname()} "
            f"CPUs={CPUS_PER_NODE} RealMemory=4000 State=UNKNOWN" for n in self.nodes)
        names = ",".join(n.name for n in self.nodes)
        d = self.workdir
        self.conf_path.write_text(f"""\
ClusterName=hpcbench{self.index}
SlurmctldHost={socket.gethostname()}({self.controller_address})
SlurmctldPort={_free_port(self.controller_address)}
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
KillWait=30
InactiveLimit=0
SlurmdTimeout=60
{node_lines}
PartitionName=debug Nodes={names} Default=YES MaxTime=INFINITE State=UP
""")

    def _start_munge(self) -> None:
        m = self.workdir / "munge"
        self._spawn(["munged", "--foreground", "--force", f"--socket={m}/munge.socket",
                     f"--key-file={m}/munge.key", f"--pid-file={m}/munged.pid",
                     f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"],
                    "munged.out")
        wait_until(lambda: (m / "munge.socket").exists(), timeout=15, what="munged's socket")

    def _start_controller(self) -> None:
        self._spawn(["slurmctld", "-D", "-i", "-f", str(self.conf_path)], "slurmctld.out")
        wait_until(lambda: self.slurm(["scontrol", "ping"], check=False).returncode == 0,
                   timeout=30, interval=0.2, what=f"slurmctld to answer (see {self.workdir})")

    def _start_slurmd(self, node: VirtualNode) -> None:
        self._spawn(["nsenter", f"--net=/var/run/netns/{node.netns}",
                     "slurmd", "-D", "-N", node.name, "-f", str(self.conf_path)],
                    f"slurmd-{node.name}.out")

    def _spawn(self, argv: list[str], log_name: str) -> None:
        with open(self.workdir / log_name, "wb") as log:
            daemon = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                      env=self.env, start_new_session=True,
                                      preexec_fn=_die_with_test_process)
        self._daemons.append(daemon)
        if daemon.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited at once; see {self.workdir / log_name}")

    def _all_idle(self) -> bool:
        shown = self.slurm(["sinfo", "-h", "-N", "-o", "%N %t"], check=False).stdout.split("\n")
        states = dict(line.split() for line in shown if line.strip())
        return len(states) == NODE_COUNT and all(s == "idle" for s in states.values())


def _die_with_test_process() -> None:
    """In the child before exec: get SIGTERM when pytest dies, even by SIGKILL, so no daemon
    of a killed test session lingers (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def build_cluster(base: Path | None = None) -> VirtualCluster:
    """Start a cluster in a fresh directory; the caller must call `stop()` (also on failure)."""
    workdir = Path(tempfile.mkdtemp(prefix="hpcbench-vcluster-", dir=base))
    cluster = VirtualCluster(workdir=workdir)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise
