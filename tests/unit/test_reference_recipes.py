"""The reference documents' recipes, verbatim (tests/support/reference_recipes/, with their
source named in its README): `hpcbench validate` and `hpcbench plan` give each its documented
outcome. A recipe of the current format is accepted and planned as its document describes; a
block of the reference's older formats (per-service and per-client recipes, the orchestrator's
config.yaml, a schema fragment) is E006 naming each key and what to write instead. The parts
the toolkit documents as additions to a recipe are also added to its 6.1 recipe the way their
section says, and give what that section promises (18 trials, 40 concurrent clients, Ray)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from hpcbench.coordinator.cli.main import main

HERE = Path(__file__).resolve().parents[1] / "support" / "reference_recipes"


@dataclass(frozen=True)
class Documented:
    file: str
    accepted: bool
    says: tuple[str, ...]     # in the output: the plan's lines, or the E006's fixes
    plan: tuple[str, ...] = field(default=())   # more plan lines, for accepted recipes


FRAGMENT = ("scenario: got nothing (key is missing); expected this required key",
            "workload: got nothing (key is missing); expected this required key: a mapping "
            "with at least service and model")

BLOCKS = [
    Documented("developer-guide.step-5-create-recipe-example.yaml", False, (
        "workload.service: got 'tensorrt'; expected one of simulator, ollama, vllm, llamacpp, "
        "redis, dummy or a plugin registered under the entry-point group 'hpcbench.services'",
        "workload.batch_size: got 8; expected no key 'batch_size' here (did you mean \"batch\"?)")),
    Documented("developer-guide.adding-new-fields.yaml", False, (
        "properties: got", "write instead: a recipe, not a schema", *FRAGMENT)),
    Documented("extending-the-framework.step-3-create-recipe.yaml", False, (
        "write instead: workload.service (the service's name, e.g. vllm)", *FRAGMENT)),
    Documented("extending-the-framework.step-3-create-client-recipe.yaml", False, (
        "write instead: workload (the load", *FRAGMENT)),
    Documented("orchestrator-api.main-configuration-config-yaml.yaml", False, (
        "hpc: got", "no SSH settings", "slurm: got",
        "write instead: partition, account and qos at the top level", "containers: got",
        "services_dir: got", "clients_dir: got")),
    Documented("orchestrator-api.service-recipe-schema.yaml", False, (
        "name: got 'ollama'; expected no key 'name' here; write instead: scenario",
        "container_image: got", "write instead: artifacts.service.path",
        "environment: got", "write instead: servers.service_config.env",
        "ports: got [11434]", "write instead: servers.service_config.port",
        "health_check: got", "write instead: servers.health_check",
        "resources.gpu: got 1", "write instead: resources.servers.gpus",
        "resources.memory: got '16GB'", "mem_gb")),
    Documented("orchestrator-api.client-recipe-schema.yaml", False, (
        "target_service: got", "write instead: endpoints: [http://HOST:PORT]",
        "parameters: got", "concurrency for concurrent users",
        "duration: got 300; expected no key 'duration' here; it belongs under workload")),
    Documented("orchestrator-api.complete-recipe-schema.yaml", False, (
        "is not valid YAML", "fix: a recipe is one YAML document")),
    Documented("toolkit.6.1-recipe-structure.yaml", True, (
        "ok: ", "scenario experiment-name, service ollama, 1 trial(s)"), plan=(
        "0  default  (20 concurrent stream(s))",
        "node1  coordinator, monitor", "node2  server, monitor", "node3  server, monitor",
        "node4  client x1, monitor", "node5  client x1, monitor",
        "health: GET /api/tags on every server, every 5s, for at most 300s",
        "image of the executors: /path/to/containers/python_3_12_3_v2.sif (artifacts.python",
        "sbatch --job-name=hpcbench-experiment-name --nodes=5 --partition=gpu --account=p200981 "
        "--qos=default --time=02:00:00 --exclusive --gpus-per-node=2 --ntasks-per-node=1 "
        "--cpus-per-task=4 --mem=32G",
        "servers steps: srun --cpus-per-task=1 --mem=32G",
        "clients steps: srun --cpus-per-task=2 --mem=16G",
        "monitors steps: srun --cpus-per-task=4 --mem=8G",
        "env OLLAMA_HOST=node2:11434 apptainer exec --nv --bind /project/path/.ollama:/root/"
        ".ollama:rw --bind /project/path/scratch:/scratch:rw /path/to/containers/"
        "ollama_latest.sif ollama serve")),
    Documented("toolkit.6.2-distributed-vllm-configuration.yaml", False, FRAGMENT),
    Documented("toolkit.6.3-parameter-sweeps.yaml", False, (
        "scenario: got nothing", "workload.service: got nothing", "workload.model: got nothing")),
    Documented("toolkit.8.1-configuration.yaml", False, FRAGMENT),
    Documented("toolkit.8.2-multi-node-client-distribution.yaml", False, FRAGMENT),
]


def hpcbench(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_every_block_is_checked():
    assert sorted(block.file for block in BLOCKS) == sorted(p.name for p in HERE.glob("*.yaml"))


@pytest.mark.parametrize("block", BLOCKS, ids=[block.file for block in BLOCKS])
def test_validate_gives_the_documented_outcome(block, capsys):
    code, output = hpcbench(capsys, "validate", str(HERE / block.file))
    if block.accepted:
        assert code == 0, output
    else:
        assert code == 2 and output.startswith("error E006: "), output
        assert "Traceback" not in output
    for words in block.says:
        assert words in output, output


@pytest.mark.parametrize("block", BLOCKS, ids=[block.file for block in BLOCKS])
def test_plan_gives_the_documented_outcome(block, capsys):
    code, output = hpcbench(capsys, "plan", "--commands", str(HERE / block.file))
    assert code == (0 if block.accepted else 2), output
    expected = block.plan if block.accepted else block.says
    for words in expected:
        assert words in output, output


# --- the toolkit's parts, added to its 6.1 recipe as their sections say -------------------------

def merged(*parts: dict) -> dict:
    """The 6.1 recipe with each part added: mappings merge key by key, other values replace."""
    def merge(into: dict, part: dict) -> None:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = copy.deepcopy(value)

    recipe = yaml.safe_load((HERE / "toolkit.6.1-recipe-structure.yaml").read_text())
    for part in parts:
        merge(recipe, part)
    return recipe


def block(name: str) -> dict:
    return yaml.safe_load((HERE / name).read_text())


# 6.2 and 8.1 are "distributed vLLM": the 6.1 recipe's service becomes vllm, and its Ollama
# setting (gpu_layers) goes, as vLLM refuses it (checked below)
AS_VLLM = {"workload": {"service": "vllm", "model": "meta-llama/Llama-3.1-8B-Instruct"}}


def planned(capsys, tmp_path: Path, recipe: dict) -> tuple[int, str]:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code, output = hpcbench(capsys, "validate", str(path))
    if code != 0:
        return code, output
    return hpcbench(capsys, "plan", "--commands", str(path))


def without_gpu_layers(recipe: dict) -> dict:
    recipe["servers"]["service_config"].pop("gpu_layers")
    return recipe


@pytest.mark.parametrize("name", ["toolkit.6.2-distributed-vllm-configuration.yaml",
                                  "toolkit.8.1-configuration.yaml"])
def test_distributed_vllm_parts_make_a_ray_served_vllm(name, capsys, tmp_path):
    code, output = planned(capsys, tmp_path, merged(AS_VLLM, block(name)))
    assert code == 2 and "servers.service_config.gpu_layers: got 0; expected no gpu_layers: " \
                          "vLLM keeps every layer on its GPUs" in output, output
    code, output = planned(capsys, tmp_path, without_gpu_layers(merged(AS_VLLM, block(name))))
    assert code == 0, output
    assert "node2  ray-head, monitor" in output and "node3  ray-worker, monitor" in output
    serve = next(line for line in output.splitlines() if "--serve" in line)
    assert "--tensor-parallel-size" in serve and "--distributed-executor-backend" in serve
    # ray.num_*_per_node reach `ray start` (an argv in JSON inside the supervisor's line)
    assert '"--num-cpus", "4", "--num-gpus", "2"' in output
    if name.startswith("toolkit.6.2"):
        assert "--max-model-len" in serve and "--enforce-eager" in serve
        assert "health: GET /health on every server, every 10s, for at most 600s" in output
        assert '"--dashboard-port", "8265"' in output


def test_the_sweep_part_gives_18_trials_once_its_api_takes_batches(capsys, tmp_path):
    sweep = block("toolkit.6.3-parameter-sweeps.yaml")
    code, output = planned(capsys, tmp_path, merged(sweep))
    assert code == 2 and "workload.batch: got [1, 4, 8]; expected 1 unless workload.api is " \
                          "openai-completions" in output, output
    code, output = planned(capsys, tmp_path, merged(sweep, {"workload": {
        "api": "openai-completions"}}))
    assert code == 0, output
    assert "18 trial(s)" in output and "batch-8_concurrency-32_prompt_len-512" in output


def test_the_client_distribution_part_gives_40_clients_on_enough_nodes(capsys, tmp_path):
    clients = block("toolkit.8.2-multi-node-client-distribution.yaml")
    code, output = planned(capsys, tmp_path, merged(clients))
    assert code == 2 and "orchestration.total_nodes: got 5; expected at least servers + " \
                          "clients + monitors nodes = 7" in output, output
    code, output = planned(capsys, tmp_path, merged(clients, {"orchestration": {
        "total_nodes": 7}}))
    assert code == 0, output
    assert "(40 concurrent stream(s))" in output
    assert [line.split()[0] for line in output.splitlines()
            if "client x1" in line] == ["node4", "node5", "node6", "node7"]
