"""Node roles for a recipe on a list of nodes: who serves, who drives load, whom each executor hits.

Rules (DESIGN.md section 6, the same as run.sbatch's `slurm.place_on_allocation`): the coordinator runs
on the first node, alone when the allocation has a node to spare beyond servers + clients (the
first `monitors.nodes` nodes, when the recipe asks for observer nodes, run only the coordinator
and monitors); a monitor runs on every node; servers take the next `servers.nodes` nodes and clients the next
`clients.nodes` (sharing server nodes only when the allocation is too small, e.g. one machine). Each client node runs
`executors_per_node` executors; `distribution_strategy` maps executors to server endpoints:

- round-robin: executor i -> endpoint i mod S
- static:      contiguous blocks; executor i -> endpoint floor(i * S / E)
- random:      each executor -> one endpoint drawn with the recipe's seed (reproducible)
- all-to-all:  every executor -> every endpoint (the executor spreads its requests)

A vLLM served by Ray over several nodes is one service: its head node is the only endpoint.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from hpcbench.common.errors import config_error
from hpcbench.recipes import Recipe


@dataclass(frozen=True)
class ServerRole:
    node: str
    role: str  # "server", "ray-head" or "ray-worker"


@dataclass(frozen=True)
class ExecutorSlot:
    id: str            # "exec-0", "exec-1", ... unique within the session
    node: str
    targets: tuple[str, ...]  # endpoint URLs this executor sends requests to


@dataclass(frozen=True)
class Placement:
    coordinator: str
    servers: tuple[ServerRole, ...]
    endpoints: tuple[str, ...]
    executors: tuple[ExecutorSlot, ...]
    monitors: tuple[str, ...]
    notes: tuple[str, ...] = ()  # things a user should know (shared nodes, idle endpoints)

    @property
    def server_nodes(self) -> tuple[str, ...]:
        """Server node names, head first (what `servers.registry.launch_contexts` reads)."""
        return tuple(server.node for server in self.servers)

    @property
    def client_nodes(self) -> dict[str, int]:
        """client node -> how many executors run on it (in node order)."""
        counts: dict[str, int] = {}
        for slot in self.executors:
            counts[slot.node] = counts.get(slot.node, 0) + 1
        return counts

    def roles_of(self, node: str) -> list[str]:
        """The roles one node plays, e.g. ["coordinator", "server", "client x1", "monitor"]."""
        roles = ["coordinator"] if node == self.coordinator else []
        roles += [server.role for server in self.servers if server.node == node]
        if node in self.client_nodes:
            roles.append(f"client x{self.client_nodes[node]}")
        if node in self.monitors:
            roles.append("monitor")
        return roles

    def to_dict(self) -> dict:
        return asdict(self)


def place_roles(recipe: Recipe, nodes: list[str]) -> Placement:
    """Place every role of `recipe` on `nodes` (E006 when the nodes cannot hold the servers)."""
    if not nodes:
        raise config_error("no nodes to place roles on", ["give at least one node name"])
    if len(set(nodes)) != len(nodes):
        raise config_error(f"node names repeat: {', '.join(nodes)}", ["give each node once"])
    data = recipe.data
    allocation = data["orchestration"]["node_allocation"]
    server_count = 0 if data["endpoints"] else allocation["servers"]["nodes"]
    if server_count > len(nodes):
        raise config_error(
            f"orchestration.node_allocation.servers.nodes is {server_count} but only "
            f"{len(nodes)} node(s) are available",
            ["allocate more nodes or lower servers.nodes"])
    slurm = data["orchestration"]["mode"] == "slurm"
    notes: list[str] = [] if slurm else local_notes(data)
    client_count = allocation["clients"]["nodes"]
    first = _observer_nodes(allocation["monitors"]["nodes"], len(nodes), server_count,
                            client_count, notes if slurm else [])
    servers, endpoints = _servers(data, nodes[first:first + server_count])
    if not endpoints:
        raise config_error("nothing to benchmark: no server nodes and no endpoints",
                           ["set orchestration.node_allocation.servers.nodes >= 1 or endpoints: [url]"])
    client_nodes = _client_nodes(nodes[first:], server_count, client_count,
                                 notes if slurm else [])
    per_node = allocation["clients"]["executors_per_node"]
    slots = [(node, index) for node in client_nodes for index in range(per_node)]
    strategy = allocation["clients"]["distribution_strategy"]
    seed = data["metadata"].get("seed", data["workload"]["dataset"]["seed"])
    targets = assign_targets(strategy, len(slots), endpoints, seed)
    executors = tuple(ExecutorSlot(id=f"exec-{number}", node=node, targets=tuple(mapped))
                      for number, ((node, _), mapped) in enumerate(zip(slots, targets)))
    idle = [url for url in endpoints if not any(url in slot.targets for slot in executors)]
    if idle:
        notes.append(f"no executor targets {', '.join(idle)} ({strategy} with {len(slots)} "
                     f"executor(s)); raise executors_per_node or use all-to-all")
    return Placement(coordinator=nodes[0], servers=servers, endpoints=tuple(endpoints),
                     executors=executors, monitors=tuple(nodes), notes=tuple(notes))


def _observer_nodes(wanted: int, nodes: int, servers: int, clients: int,
                    notes: list[str]) -> int:
    """How many nodes at the start run only the coordinator and monitors, no server and no
    load: `monitors.nodes` when the recipe asks for some, else 1 when there is a node beyond
    servers + clients (so the coordinator never competes with the load), never so many that
    the servers lose their nodes."""
    if not wanted:
        return 1 if nodes > servers + clients else 0
    if wanted + servers > nodes:
        notes.append(f"monitors.nodes is {wanted} but only {max(0, nodes - servers)} node(s) "
                     f"are left beside {servers} server node(s); using that many")
        return max(0, nodes - servers)
    return wanted


# Keys only a Slurm job reads: on one machine there is nothing to request them from.
SLURM_ONLY = ("partition", "account", "qos", "modules", "orchestration.job_config",
              "resources")


def local_notes(data: dict) -> list[str]:
    """For a local recipe, the Slurm-only settings it gives (they take effect with
    orchestration.mode: slurm; `hpcbench plan` and `hpcbench run` say so)."""
    given = []
    for key in SLURM_ONLY:
        node: object = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node:
            given.append(key)
    if not given:
        return []
    return [f"{', '.join(given)} apply to Slurm jobs (orchestration.mode: slurm): a local run "
            f"requests no CPUs, memory, GPUs or modules"]


def assign_targets(strategy: str, executors: int, endpoints: list[str], seed: int) -> list[list[str]]:
    """Per executor, the endpoint URLs it targets under a distribution strategy."""
    count = len(endpoints)
    if strategy == "all-to-all":
        return [list(endpoints) for _ in range(executors)]
    if strategy == "static":
        return [[endpoints[index * count // executors]] for index in range(executors)]
    if strategy == "random":
        chooser = random.Random(seed)
        return [[chooser.choice(endpoints)] for _ in range(executors)]
    return [[endpoints[index % count]] for index in range(executors)]


def executor_shares(total: float, executors: int) -> list[float]:
    """Split a total (concurrency or rate) over executors; integer totals stay integers."""
    if isinstance(total, int):
        base, extra = divmod(total, executors)
        return [base + (1 if index < extra else 0) for index in range(executors)]
    return [total / executors] * executors


def executor_concurrency(workload: dict, placement: Placement) -> list[int]:
    """Closed-loop streams per executor for a trial's workload (in `placement.executors` order).

    `concurrency` (total across nodes) wins over `clients_per_node`; either is split evenly.
    """
    if workload.get("concurrency") is not None:
        return executor_shares(int(workload["concurrency"]), len(placement.executors))
    streams: list[int] = []
    for count in placement.client_nodes.values():
        streams += executor_shares(int(workload["clients_per_node"]), count)
    return streams


def _servers(data: dict, server_nodes: list[str]) -> tuple[tuple[ServerRole, ...], list[str]]:
    if data["endpoints"]:
        return (), list(data["endpoints"])
    port = data["servers"]["service_config"].get("port") or _default_port(data["workload"]["service"])
    distributed = data["servers"]["service_config"].get("distributed", {})
    if distributed.get("enabled") and server_nodes:
        roles = [ServerRole(server_nodes[0], "ray-head")]
        roles += [ServerRole(node, "ray-worker") for node in server_nodes[1:]]
        return tuple(roles), [f"http://{server_nodes[0]}:{port}"]
    return (tuple(ServerRole(node, "server") for node in server_nodes),
            [f"http://{node}:{port}" for node in server_nodes])


def _default_port(service: str) -> int:
    from hpcbench.servers.registry import get_service
    return get_service(service).default_port


def _client_nodes(nodes: list[str], server_count: int, wanted: int, notes: list[str]) -> list[str]:
    """Free nodes first, then nodes shared with servers when the allocation is too small.

    Sharing is noted (in `notes`) for cluster runs, where it skews results; locally it is normal.
    """
    pool = nodes[server_count:] + nodes[:server_count]
    chosen = pool[:wanted]
    shared = [node for node in chosen if node in nodes[:server_count]]
    if shared:
        notes.append(f"clients share node(s) {', '.join(shared)} with servers "
                     f"(only {len(nodes)} node(s) for {server_count} server + {wanted} client node(s))")
    if wanted > len(nodes):
        notes.append(f"clients.nodes is {wanted} but only {len(nodes)} node(s) can take clients; "
                     f"using {len(chosen)}")
    return chosen
