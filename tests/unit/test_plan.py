"""Node roles: coordinator first, monitors everywhere, servers and clients on their own nodes,
and each distribution strategy's mapping of executors to server endpoints."""
from collections import Counter

import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.launch.plan import assign_targets, executor_concurrency, executor_shares, place_roles
from hpcbench.recipes import expand_trials, load_recipe, recipe_from_dict

NODES = [f"n{index}" for index in range(1, 7)]


def slurm_recipe(servers=2, clients=2, total=None, strategy="round-robin", executors=1, **extra):
    return recipe_from_dict({
        "scenario": "p", "partition": "gpu", "account": "a", "runtime": "process",
        "orchestration": {"mode": "slurm", "total_nodes": total or servers + clients,
                          "node_allocation": {
                              "servers": {"nodes": servers},
                              "clients": {"nodes": clients, "distribution_strategy": strategy,
                                          "executors_per_node": executors}}},
        "workload": {"service": "simulator", "model": "m", "clients_per_node": 6},
        **extra})


def test_roles_on_exactly_enough_nodes():
    placement = place_roles(slurm_recipe(), NODES[:4])
    assert placement.coordinator == "n1"
    assert placement.server_nodes == ("n1", "n2")
    assert list(placement.client_nodes) == ["n3", "n4"]
    assert placement.monitors == tuple(NODES[:4])
    assert placement.endpoints == ("http://n1:8000", "http://n2:8000")
    assert placement.notes == ()


def test_spare_node_keeps_the_coordinator_alone():
    placement = place_roles(slurm_recipe(), NODES[:5])
    assert placement.roles_of("n1") == ["coordinator", "monitor"]
    assert placement.server_nodes == ("n2", "n3")
    assert list(placement.client_nodes) == ["n4", "n5"]


def test_too_few_nodes_share_and_say_so():
    placement = place_roles(slurm_recipe(servers=1, clients=2), ["a", "b"])
    assert placement.server_nodes == ("a",)
    assert list(placement.client_nodes) == ["b", "a"]
    assert any("share" in note for note in placement.notes)


def test_servers_that_do_not_fit_are_a_config_error():
    with pytest.raises(HpcbenchError) as error:
        place_roles(slurm_recipe(servers=3, clients=1), ["a", "b"])
    assert error.value.code == "E006" and "servers.nodes is 3" in error.value.message


@pytest.mark.parametrize("nodes", [[], ["a", "a"]])
def test_bad_node_lists_are_config_errors(nodes):
    with pytest.raises(HpcbenchError):
        place_roles(slurm_recipe(servers=1, clients=1), nodes)


def test_round_robin_alternates_servers():
    placement = place_roles(slurm_recipe(servers=2, clients=2, executors=2), NODES[:4])
    targets = [slot.targets for slot in placement.executors]
    assert targets == [("http://n1:8000",), ("http://n2:8000",)] * 2
    assert placement.client_nodes == {"n3": 2, "n4": 2}
    assert [slot.id for slot in placement.executors] == ["exec-0", "exec-1", "exec-2", "exec-3"]


def test_static_gives_contiguous_blocks():
    assert assign_targets("static", 4, ["A", "B"], 0) == [["A"], ["A"], ["B"], ["B"]]


def test_all_to_all_targets_every_endpoint():
    placement = place_roles(slurm_recipe(strategy="all-to-all"), NODES[:4])
    assert all(slot.targets == placement.endpoints for slot in placement.executors)


def test_random_is_reproducible_with_the_seed_and_varies_with_it():
    endpoints = [f"http://s{index}:1" for index in range(4)]
    first = assign_targets("random", 40, endpoints, 7)
    assert first == assign_targets("random", 40, endpoints, 7)
    assert first != assign_targets("random", 40, endpoints, 8)
    assert len(Counter(target[0] for target in first)) > 1


def test_idle_endpoints_are_noted():
    placement = place_roles(slurm_recipe(servers=2, clients=1), NODES[:3])
    assert any("no executor targets http://n2:8000" in note for note in placement.notes)


def test_ray_cluster_is_one_endpoint_on_its_head(repo):
    recipe = load_recipe(repo / "recipes/examples/vllm-ray-2nodes.yaml")
    placement = place_roles(recipe, NODES[:5])
    assert [server.role for server in placement.servers] == ["ray-head", "ray-worker"]
    assert placement.endpoints == ("http://n2:8000",)
    assert all(slot.targets == ("http://n2:8000",) for slot in placement.executors)


def test_existing_endpoints_need_no_server_nodes():
    recipe = recipe_from_dict({"scenario": "e", "endpoints": ["http://10.0.0.5:8000",
                                                              "http://10.0.0.6:8000"],
                               "workload": {"service": "vllm", "model": "m"}})
    placement = place_roles(recipe, ["127.0.0.1"])
    assert placement.servers == ()
    assert placement.endpoints == ("http://10.0.0.5:8000", "http://10.0.0.6:8000")
    assert placement.roles_of("127.0.0.1") == ["coordinator", "client x1", "monitor"]


def test_port_comes_from_service_config_or_the_service(repo):
    ollama = load_recipe(repo / "recipes/examples/ollama-single.yaml")
    assert place_roles(ollama, NODES[:3]).endpoints == ("http://n1:11434",)
    llama = load_recipe(repo / "recipes/examples/llamacpp-cpu.yaml")
    assert place_roles(llama, ["127.0.0.1"]).endpoints == ("http://127.0.0.1:8080",)


def test_concurrency_splits_over_executors_and_clients_per_node_is_per_node():
    placement = place_roles(slurm_recipe(servers=1, clients=2, executors=2), NODES[:3])
    trial = expand_trials(slurm_recipe(servers=1, clients=2, executors=2))[0]
    assert executor_concurrency(trial.workload, placement) == [3, 3, 3, 3]  # 6 per node
    assert executor_concurrency({**trial.workload, "concurrency": 10}, placement) == [3, 3, 2, 2]
    assert executor_shares(7.5, 3) == [2.5, 2.5, 2.5]


def test_monitor_nodes_are_kept_for_the_coordinator_and_monitors():
    """monitors.nodes: N reserves the first N nodes: coordinator and monitors, no load."""
    recipe = recipe_from_dict({
        "scenario": "p", "partition": "gpu", "account": "a", "runtime": "process",
        "orchestration": {"mode": "slurm", "node_allocation": {
            "servers": {"nodes": 1}, "clients": {"nodes": 1}, "monitors": {"nodes": 2}}},
        "workload": {"service": "simulator", "model": "m"}})
    assert recipe.data["orchestration"]["total_nodes"] == 4
    placement = place_roles(recipe, NODES[:4])
    assert [placement.roles_of(node) for node in NODES[:4]] == [
        ["coordinator", "monitor"], ["monitor"], ["server", "monitor"],
        ["client x1", "monitor"]]
    squeezed = place_roles(recipe, NODES[:2])        # `plan --nodes 2`: servers keep a node
    assert squeezed.server_nodes == ("n2",)
    assert any("monitors.nodes is 2" in note for note in squeezed.notes)


def test_a_local_recipe_says_its_slurm_settings_do_nothing_here():
    recipe = recipe_from_dict({"scenario": "p", "workload": {"service": "simulator", "model": "m"},
                               "partition": "gpu", "resources": {"servers": {"cpus_per_task": 4}}})
    [note] = place_roles(recipe, ["localhost"]).notes
    assert note.startswith("partition, resources apply to Slurm jobs")
    plain = recipe_from_dict({"scenario": "p", "workload": {"service": "simulator", "model": "m"}})
    assert place_roles(plain, ["localhost"]).notes == ()
