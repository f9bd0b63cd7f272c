"""The example plugins (servers/examples/kserve, servers/examples/triton), each installed with
hpcbench into a FRESH venv and run end to end with that venv's `hpcbench run`: the
coordinator finds the service, the executor (a process of its own) loads the plugin's
protocol, and the results are like any other service's. The Triton plugin runs against the
KServe example server standing in for Triton's HTTP API (no GPU, no tritonserver here)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from support.plugin_venv import fresh_venv, hpcbench_wheel
from support.ports import free_port
from support.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return hpcbench_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def kserve_venv(tmp_path_factory, wheel) -> Path:
    """bin/ of a fresh venv with hpcbench and hpcbench-kserve-example."""
    return fresh_venv(tmp_path_factory.mktemp("kserve") / "venv", wheel, "kserve")


@pytest.fixture(scope="module")
def triton_venv(tmp_path_factory, wheel) -> Path:
    """bin/ of a fresh venv with hpcbench, hpcbench-kserve-example and hpcbench-triton-example."""
    return fresh_venv(tmp_path_factory.mktemp("triton") / "venv", wheel, "kserve", "triton")


def env_of(bin_dir: Path) -> dict:
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONUNBUFFERED": "1", "VIRTUAL_ENV": str(bin_dir.parent)}


def hpcbench(bin_dir: Path, *args, cwd: Path, timeout: float = 240):
    return subprocess.run([str(bin_dir / "hpcbench"), *map(str, args)], cwd=cwd,
                          env=env_of(bin_dir), capture_output=True, text=True, timeout=timeout)


def write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def one_run_dir(results: Path) -> Path:
    (session,) = [path.parent for path in results.rglob("session.json")]
    return session


def test_kserve_example_runs_end_to_end_and_its_protocol_loads_in_the_executor(kserve_venv,
                                                                               tmp_path):
    recipe = write(tmp_path / "kserve.yaml", {
        "scenario": "kserve-e2e", "runtime": "process", "orchestration": {"mode": "local"},
        "results_dir": str(tmp_path / "results"),
        "workload": {"service": "kserve-example", "model": "checksum", "duration": "2s",
                     "warmup": "0s", "concurrency": 4,
                     "api_config": {"inputs": [{"name": "INPUT0", "datatype": "BYTES",
                                                "shape": [1]},
                                               {"name": "IDS", "datatype": "INT32",
                                                "shape": [1, 8]}],
                                    "outputs": ["OUTPUT0", "OUTPUT1"]}},
        "servers": {"service_config": {"delay": 0.002, "instances": 2}}})
    run = hpcbench(kserve_venv, "run", recipe, cwd=tmp_path)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    run_dir = one_run_dir(tmp_path / "results")
    assert (run_dir / "report.html").stat().st_size > 0       # ITL and TPOT have no samples
    overall = json.loads((run_dir / "default" / "summary.json").read_text())["overall"]
    assert overall["requests"] > 50 and overall["error_total"] == 0
    assert overall["latency"]["itl"]["count"] == 0
    # one "token" per answer: TTFT is the response time, counted once per request
    assert overall["latency"]["ttft"]["count"] == overall["requests"]
    assert overall["output_tokens"] == overall["requests"]
    # at most 2 inferences of 2 ms at a time: the server, not the client, bounds the rate
    assert overall["req_per_s"] < 2 / 0.002
    session = json.loads((run_dir / "session.json").read_text())
    assert session["server_version"] == "0.1.0"          # GET /v2 of the example server
    resolved = yaml.safe_load((run_dir / "default" / "recipe.yaml").read_text())
    assert resolved["workload"]["api"] == "kserve-v2" and resolved["workload"]["stream"] is False


def test_kserve_client_classifies_the_servers_refusals(kserve_venv, tmp_path):
    """The standalone executor of the fresh venv against the example server: an unknown model
    is 404, an output the model lacks is 400, both HTTP_STATUS with the status kept."""
    port = free_port()
    server = subprocess.Popen([str(kserve_venv / "python"), "-m", "hpcbench_kserve.server",
                               "--http-port", str(port), "--model", "checksum"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: b"ready" in _get(f"http://127.0.0.1:{port}/v2/health/ready") or
                   server.poll() is not None, timeout=30, what="the example server")
        results = {}
        for name, model, config in (("ok", "checksum", {}), ("no-model", "nope", {}),
                                    ("no-output", "checksum", {"outputs": ["OUTPUT9"]})):
            out = tmp_path / f"{name}.bin"
            run = subprocess.run([str(kserve_venv / "hpcbench-executor"), "--target",
                                  f"http://127.0.0.1:{port}", "--api", "kserve-v2", "--model",
                                  model, "--api-config", json.dumps(config), "--duration", "0",
                                  "--max-requests", "5", "--out", str(out)],
                                 env=env_of(kserve_venv), capture_output=True, text=True,
                                 timeout=60)
            assert run.returncode == 0, run.stderr[-2000:]
            results[name] = _rows(kserve_venv, out)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert results["ok"] == [(0, 200)] * 5
    assert results["no-model"] == [(1, 404)] * 5            # ErrorClass.HTTP_STATUS
    assert results["no-output"] == [(1, 400)] * 5


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return b"ready" if answer.status == 200 else b""
    except OSError:
        return b""


def _rows(bin_dir: Path, path: Path) -> list[tuple[int, int]]:
    """(error, status) of every request in a sample file, read by the fresh venv."""
    read = subprocess.run([str(bin_dir / "python"), "-c", (
        "import json, sys\nfrom hpcbench.executor.sinks import read_batches\n"
        "print(json.dumps([[int(e), int(s)] for b in read_batches(sys.argv[1]) "
        "for e, s in zip(b.columns['error'], b.columns['status'])]))"), str(path)],
        capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    return [tuple(row) for row in json.loads(read.stdout)]


def model_repository(root: Path) -> Path:
    """A Triton-style model repository: a folder per model, its config.pbtxt and version 1."""
    model = root / "models" / "resnet-mini"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "resnet-mini"\nplatform: "tensorrt_plan"\n'
                                        "max_batch_size: 8\n")
    (model / "1" / "model.plan").write_bytes(b"not a real engine")
    return root / "models"


def triton_recipe(tmp_path: Path, bin_dir: Path, **service_config) -> dict:
    return {
        "scenario": "triton-e2e", "runtime": "process", "orchestration": {"mode": "local"},
        "results_dir": str(tmp_path / "results"),
        "workload": {"service": "triton", "model": "resnet-mini", "duration": "2s",
                     "warmup": "0s", "concurrency": 4,
                     "api_config": {"inputs": [{"name": "input", "datatype": "FP32",
                                                "shape": [2, 3, 4, 4]}],
                                    "outputs": ["OUTPUT0"]}},
        "servers": {"service_config": {
            # the stand-in for tritonserver: the example server takes Triton's flags
            "tritonserver": [str(bin_dir / "python"), "-m", "hpcbench_kserve.server"],
            "model_repository": str(model_repository(tmp_path)),
            "max_batch_size": 4, "instance_group_count": 2, "dynamic_batching": True,
            "backend": "hpcbench_example", "delay": 0.002, **service_config}}}


def test_triton_plugin_runs_end_to_end_against_the_standin_server(triton_venv, tmp_path):
    recipe = write(tmp_path / "triton.yaml", triton_recipe(tmp_path, triton_venv))
    run = hpcbench(triton_venv, "run", "--no-report", recipe, cwd=tmp_path)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    run_dir = one_run_dir(tmp_path / "results")
    overall = json.loads((run_dir / "default" / "summary.json").read_text())["overall"]
    assert overall["requests"] > 50 and overall["error_total"] == 0
    assert overall["latency"]["ttft"]["count"] == overall["requests"]
    # the stand-in started from Triton's command line, with the repository's model
    logs = "\n".join(path.read_text(errors="replace") for path in run_dir.rglob("*.log"))
    assert "serving resnet-mini on http://127.0.0.1:" in logs, sorted(run_dir.rglob("*"))
    resolved = yaml.safe_load((run_dir / "default" / "recipe.yaml").read_text())
    assert resolved["workload"]["api"] == "kserve-v2"            # the service's client


def test_triton_prepare_applies_the_model_settings_and_checks_the_backend(triton_venv,
                                                                          tmp_path):
    """prepare against the stand-in: max_batch_size, instance_group_count and
    dynamic_batching end up in the served model's configuration; a backend that is not the
    model's is E003."""
    port = free_port()
    repo = model_repository(tmp_path)
    server = subprocess.Popen([str(triton_venv / "python"), "-m", "hpcbench_kserve.server",
                               "--model-repository", str(repo), "--model-control-mode",
                               "explicit", "--load-model", "resnet-mini", "--http-port",
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    probe = (
        "import json, sys\n"
        "from hpcbench.common.errors import HpcbenchError\n"
        "from hpcbench.servers.registry import get_service\n"
        "url, config = sys.argv[1], json.loads(sys.argv[2])\n"
        "try:\n"
        "    get_service('triton').prepare(url, 'resnet-mini', 10, config)\n"
        "    print('ok')\n"
        "except HpcbenchError as error:\n"
        "    print(error.code, error.message)\n")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(f"{url}/v2/health/ready") or server.poll() is not None,
                   timeout=30, what="the stand-in server")

        def prepare(**config) -> str:
            done = subprocess.run([str(triton_venv / "python"), "-c", probe, url,
                                   json.dumps(config)], capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 0, done.stderr
            return done.stdout.strip()

        with urllib.request.urlopen(f"{url}/v2/models/resnet-mini/config", timeout=5) as got:
            before = json.loads(got.read())
        assert prepare(max_batch_size=4, instance_group_count=3,
                       dynamic_batching={"max_queue_delay_microseconds": 100}) == "ok"
        with urllib.request.urlopen(f"{url}/v2/models/resnet-mini/config", timeout=5) as got:
            after = json.loads(got.read())
        assert before["max_batch_size"] == 8 and "dynamic_batching" not in before
        assert after["max_batch_size"] == 4 and after["instance_group"][0]["count"] == 3
        assert after["dynamic_batching"] == {"max_queue_delay_microseconds": 100}
        refused = prepare(backend="tensorrt")
        assert refused.startswith("E003") and "not 'tensorrt'" in refused
        assert prepare(max_batch_size="big").startswith("E006")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_triton_launch_command_per_runtime(triton_venv, tmp_path):
    """`hpcbench plan --commands`: tritonserver itself under process, in the image with --nv
    and the recipe's binds under apptainer (neither is run here: no Triton, no Apptainer)."""
    base = {"scenario": "trt", "partition": "gpu", "account": "a",
            "orchestration": {"mode": "slurm", "total_nodes": 2},
            "workload": {"service": "triton", "model": "resnet50"},
            "servers": {"service_config": {"max_batch_size": 32, "log_verbose": 1}}}
    shown = {}
    for runtime, extra in (("process", {}), ("apptainer", {
            "artifacts": {"containers_dir": "/c", "service": {"path": "triton.sif"}},
            "binds": ["/data/models:/models:ro"]})):
        recipe = write(tmp_path / f"{runtime}.yaml", {**base, "runtime": runtime, **extra})
        plan = hpcbench(triton_venv, "plan", "--commands", recipe, cwd=tmp_path, timeout=60)
        assert plan.returncode == 0, plan.stderr
        commands = plan.stdout.split("server commands:", 1)[1].strip().splitlines()
        shown[runtime] = next(line.strip() for line in commands if "tritonserver" in line)
    process, apptainer = shown["process"], shown["apptainer"]
    assert process.startswith("tritonserver --model-repository /models --model-control-mode "
                              "explicit --load-model resnet50 --http-address ")
    assert "--http-port 8000" in process and "--grpc-port 8001" in process
    assert "--metrics-port 8002" in process and process.endswith("--log-verbose 1")
    assert "max-batch-size" not in process          # a model setting, applied by prepare
    assert apptainer.startswith("apptainer exec --nv --bind /data/models:/models:ro "
                                "/c/triton.sif tritonserver --model-repository /models")


def test_validate_knows_the_protocols_installed_where_it_runs(kserve_venv, tmp_path):
    """`hpcbench validate`: kserve-v2 is known in the venv that has the plugin, and E006
    lists the installed protocols (the plugin's among them) for a name that is none."""
    good = write(tmp_path / "good.yaml", {"scenario": "v", "workload": {
        "service": "simulator", "model": "m", "api": "kserve-v2"}})
    typo = write(tmp_path / "typo.yaml", {"scenario": "v", "workload": {
        "service": "simulator", "model": "m", "api": "kserve-v3"}})
    bad_config = write(tmp_path / "config.yaml", {"scenario": "v", "workload": {
        "service": "kserve-example", "model": "m", "api_config": {"inputz": []}}})
    assert hpcbench(kserve_venv, "validate", good, cwd=tmp_path, timeout=60).returncode == 0
    refused = hpcbench(kserve_venv, "validate", typo, cwd=tmp_path, timeout=60)
    assert refused.returncode == 2 and "E006" in refused.stderr
    assert "workload.api: got 'kserve-v3'; expected one of openai-chat" in refused.stderr
    assert "kserve-v2" in refused.stderr and 'did you mean "kserve-v2"' in refused.stderr
    refused = hpcbench(kserve_venv, "validate", bad_config, cwd=tmp_path, timeout=60)
    assert refused.returncode == 2 and "workload.api_config" in refused.stderr
    assert "inputz: not a kserve-v2 key" in refused.stderr
    # this checkout's own venv has no plugin: there kserve-v2 is not a protocol
    plain = subprocess.run([str(Path(sys.executable).with_name("hpcbench")), "validate",
                            str(good)], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 2 and "got 'kserve-v2'" in plain.stderr


def definition_sections(path: Path) -> dict[str, str]:
    parts = re.split(r"^%(\w+)\s*$", path.read_text(), flags=re.M)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2])}


def test_the_image_definitions_install_plugin_wheels_that_the_executor_loads(wheel, repo,
                                                                             tmp_path):
    """What `make images` does with containers/plugins/*.whl, outside an image: the base's
    install script (base.def's %post runs it) installs hpcbench with the plugin wheels from a
    wheelhouse made as the Makefile makes it, into a venv and bin folder of the test's;
    executor.def's %test then loads the plugin's protocol. Real images:
    tests/cluster/test_podman_slurm.py."""
    wheels = tmp_path / "wheels"
    (wheels / "top").mkdir(parents=True)
    shutil.copy(wheel, wheels / "top")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(wheels / "top"), str(repo / "servers/examples/kserve")],
                   check=True, capture_output=True, timeout=300)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--dest", str(wheels / "deps"),
                    *map(str, (wheels / "top").glob("*.whl"))],
                   check=True, capture_output=True, timeout=300)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    built = subprocess.run(["sh", str(repo / "containers" / "install-hpcbench.sh"), str(wheels),
                            str(tmp_path / "venv"), str(bin_dir)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    test = definition_sections(repo / "containers" / "executor.def")["test"]
    tested = subprocess.run(["sh", "-ec", test], env=env, capture_output=True, text=True,
                            timeout=120)
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert tested.stdout.split() == ["openai-chat", "openai-completions", "ollama-chat",
                                     "ollama-generate", "resp", "kserve-v2"]
