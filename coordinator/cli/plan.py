"""`hpcbench plan`: the trials of a recipe and the role of every node for a node count."""
from __future__ import annotations

import argparse
import json

HELP = "Show the trials and the node roles a recipe gives for a node count"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML file")
    nodes = parser.add_mutually_exclusive_group()
    nodes.add_argument("--nodes", type=int, metavar="N",
                       help="number of nodes (default: the recipe's orchestration.total_nodes)")
    nodes.add_argument("--node-names", metavar="A,B,...",
                       help="comma-separated node names, e.g. the allocation's nodes")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--commands", action="store_true",
                        help="also print the command each server node would run")


def run(args: argparse.Namespace) -> int:
    from hpcbench.common.errors import config_error
    from hpcbench.common.limits import MAX_NODES
    from hpcbench.coordinator.launch.plan import executor_concurrency, place_roles
    from hpcbench.coordinator.session.sample_mode import aggregation_mode
    from hpcbench.recipes import describe_trials, expand_trials, load_recipe

    recipe = load_recipe(args.recipe)
    if args.node_names is not None:
        nodes = [name.strip() for name in args.node_names.split(",") if name.strip()]
    else:
        count = recipe.data["orchestration"]["total_nodes"] if args.nodes is None else args.nodes
        if not 1 <= count <= MAX_NODES:    # a name is made for each: 10^9 of them never end
            raise config_error(f"--nodes {count}: need 1 to {MAX_NODES} nodes",
                               ["pass --nodes N within that range"])
        nodes = [f"node{index}" for index in range(1, count + 1)]
    placement = place_roles(recipe, nodes)
    search = recipe.data.get("search")
    if search:   # its first probe: the next ones follow from each verdict
        from hpcbench.coordinator.session.capacity import CapacitySearch

        trials = [CapacitySearch(recipe).next_trial(0)]
    else:
        trials = expand_trials(recipe)
    slurm = _slurm_options(recipe.data)
    samples = aggregation_mode(recipe.data["aggregation"], len(placement.executors))
    if args.json:
        print(json.dumps({
            "scenario": recipe.scenario,
            "trials": [{"id": trial.id, "index": trial.index, "repetition": trial.repetition,
                        "params": trial.params} for trial in trials],
            "search": search,
            "placement": placement.to_dict(),
            "nodes": {node: placement.roles_of(node) for node in nodes},
            "aggregation": samples,
            **slurm,
        }, indent=2))
        return 0
    print(f"scenario {recipe.scenario}: {describe_trials(recipe)}, {len(nodes)} node(s)")
    print("\ntrials:" if not search else "\nfirst probe (each next one follows from the "
          "verdicts so far: docs/capacity-search.md):")
    for trial in trials:
        load = trial.workload["load"]
        if load["pattern"] == "closed":
            pace = f"{sum(executor_concurrency(trial.workload, placement))} concurrent stream(s)"
        else:
            pace = f"{load['pattern']} at {load['rate']} req/s"
        print(f"  {trial.index:>3}  {trial.id}  ({pace})")
    print("\nnodes:")
    width = max(len(node) for node in nodes)
    for node in nodes:
        print(f"  {node.ljust(width)}  {', '.join(placement.roles_of(node))}")
    print("\nexecutors -> endpoints:")
    for slot in placement.executors:
        print(f"  {slot.id} on {slot.node} -> {', '.join(slot.targets)}")
    print(f"\nsamples: {samples['mode']} ({samples['reason']}; docs/scale.md)")
    print()
    for line in _how_it_runs(recipe.data):
        print(line)
    if slurm:
        print("\nslurm:")
        print(f"  sbatch {' '.join(slurm['sbatch'])}")
        for role, options in slurm["steps"].items():
            print(f"  {role} steps: srun {' '.join(options) or '(no resource options)'}")
    for note in placement.notes:
        print(f"note: {note}")
    if args.commands:
        from hpcbench.servers.registry import launch_commands
        print("\nserver commands:")
        for line in launch_commands(recipe, placement):
            print(f"  {line}")
    return 0


def _slurm_options(data: dict) -> dict:
    """A Slurm recipe's sbatch options and each role's step resources (empty when local)."""
    from hpcbench.coordinator.launch.slurm import ROLES, role_resources, sbatch_options

    if data["orchestration"]["mode"] != "slurm":
        return {}
    return {"sbatch": sbatch_options(data),
            "steps": {role: role_resources(data, role) for role in ROLES}}


def _how_it_runs(data: dict) -> list[str]:
    """The health check the session runs, and under Apptainer the image of each program."""
    from hpcbench.coordinator.launch.srun import component_image
    from hpcbench.servers.registry import get_service
    from hpcbench.servers.runtime import hpcbench_image

    health = data["servers"]["health_check"]
    service = get_service(data["workload"]["service"])
    if health.get("endpoint"):
        service = service.with_health_endpoint(health["endpoint"])
    if not health["enabled"]:
        lines = ["health: not checked (servers.health_check.enabled is false)"]
    else:
        what = (" and ".join(f"GET {path}" for path in service.health_paths)
                if service.health_paths is not None else f"the {service.name} service's own check")
        limit = f"{health['timeout']:g}s" + (f" or {health['retries']} failed checks"
                                              if health["retries"] is not None else "")
        lines = [f"health: {what} on every server, every {health['interval']:g}s, "
                 f"for at most {limit}"]
    if data["runtime"] in ("apptainer", "podman"):
        for role in ("executor", "monitor"):
            image, _, source = hpcbench_image(role, data["artifacts"], data["runtime"])
            lines.append(f"image of the {role}s: {image} ({source}; hpcbench must be installed "
                         "in it)")
        if (data["artifacts"].get("service") or {}).get("path") and not data["endpoints"]:
            lines.append(f"image of the service: {component_image('service', data)[0]}")
    return lines
