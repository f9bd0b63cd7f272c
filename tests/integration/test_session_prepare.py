"""The session's service phase: prepare() gets the recipe's servers.service_config, and a stop
request ends the health wait at once (both backends share this code in Session)."""
import json
import os
import textwrap

import yaml

from hpcbench.coordinator.control.server import Coordinator
from hpcbench.coordinator.launch.supervisor import free_port
from hpcbench.proto import control_v1_pb2 as pb
from tests.integration.test_run_e2e import hpcbench_run
from tests.support.sim_process import sim_process
from tests.support.waiting import wait_until

RECORDING_PLUGIN = """
    import json
    from hpcbench.servers.simulator_service import SimulatorService

    class RecordingService(SimulatorService):
        '''The simulator, recording each prepare() call to service_config["record_to"].'''
        name = "recording"

        def prepare(self, base_url, model, timeout_s, service_config=None):
            with open(service_config["record_to"], "a") as record:
                record.write(json.dumps({"url": base_url, "model": model,
                                         "service_config": service_config}) + "\\n")
            super().prepare(base_url, model, timeout_s, service_config)
"""


def install_recording_plugin(directory):
    """A third-party plugin (entry point `recording`) importable with PYTHONPATH=directory."""
    (directory / "recording_service.py").write_text(textwrap.dedent(RECORDING_PLUGIN))
    dist = directory / "recording_service-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: recording-service\n"
                                   "Version: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[hpcbench.services]\nrecording = recording_service:RecordingService\n")


def simulator_recipe(path, endpoints, service="simulator", **servers):
    path.write_text(yaml.safe_dump({
        "scenario": "prepare", "endpoints": endpoints,
        "orchestration": {"mode": "local"}, "monitoring": {"enabled": False},
        "servers": servers,
        "workload": {"service": service, "model": "sim-model", "duration": "0.5s",
                     "warmup": "0s", "request_timeout": "10s", "concurrency": 1,
                     "load": {"pattern": "closed"},
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 8},
                                 "output_tokens": {"distribution": "fixed", "mean": 4}}},
    }))
    return path


def test_prepare_gets_the_recipes_service_config_for_every_endpoint(tmp_path, monkeypatch):
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    install_recording_plugin(plugin_dir)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")])))
    record = tmp_path / "prepared.jsonl"
    config = {"record_to": str(record), "keep_alive": "5m"}
    (tmp_path / "a").mkdir()
    with sim_process(tmp_path / "a") as url:
        recipe = simulator_recipe(tmp_path / "recipe.yaml", [url], service="recording",
                                  service_config=config)
        done = hpcbench_run(str(recipe), "--results-dir", str(tmp_path / "results"))
    assert done.returncode == 0, done.stdout + done.stderr
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls == [{"url": url, "model": "sim-model", "service_config": config}]


def test_a_stop_request_ends_the_health_wait_of_a_local_run(tmp_path):
    """Nothing listens at the endpoint and health may take 10 minutes: stop() ends it now."""
    silent = f"http://127.0.0.1:{free_port()}"
    recipe = simulator_recipe(tmp_path / "recipe.yaml", [silent],
                              health_check={"timeout": "600s"})
    coordinator = Coordinator(tmp_path / "coordinator", results_root=tmp_path / "results")
    coordinator.start()
    try:
        session = coordinator.start_session(recipe_path=str(recipe))
        wait_until(lambda: session.state == pb.PREPARING, timeout=60, what="PREPARING")
        session.stop("test stop")
        assert session.wait(30), "the session kept waiting for health after stop()"
        assert session.state == pb.STOPPED and session.error is None
        assert session.supervisor.failed_children() == []
    finally:
        coordinator.stop()
