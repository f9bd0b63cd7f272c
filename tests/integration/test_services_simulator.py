"""The simulator plugin for real (`hpcbench sim` started from its LaunchSpec), and the Ollama
plugin's health and prepare steps against the simulator's Ollama API (no Ollama binary can be
installed here; the simulator speaks its protocol: /, /api/tags, /api/pull, /api/generate), and
the plugins' server versions from the simulator's /version and /api/version."""
from __future__ import annotations

import io
from importlib.metadata import version

import pytest
from support.ports import free_port

from hpcbench.common.errors import HpcbenchError
from hpcbench.servers import ollama
from hpcbench.servers.plugin import HttpService, LaunchContext, recorded_server_version
from hpcbench.servers.registry import get_service
from tests.support.standalone_server import start_server, stop_server


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory):
    work = tmp_path_factory.mktemp("sim")
    plugin = get_service("simulator")
    ctx = LaunchContext(service_config={"mode": "fixed", "extra_model": "other"},
                        model="sim-llama", node="localhost", address="127.0.0.1",
                        port=free_port(), run_dir=work)
    spec = plugin.launch(ctx)
    assert spec.argv[1:] == ["sim", "--host", "127.0.0.1", "--port", str(ctx.port),
                             "--mode", "fixed", "--extra-model", "other", "--model", "sim-llama"]
    process = start_server(spec, work / "sim.log")
    try:
        plugin.wait_healthy(spec.base_url, timeout_s=60, interval_s=0.05)
        yield spec.base_url
    finally:
        assert stop_server(process) is not None


def test_simulator_prepare_checks_the_served_model(sim_url):
    plugin = get_service("simulator")
    plugin.prepare(sim_url, "sim-llama", timeout_s=5)
    with pytest.raises(HpcbenchError) as caught:
        plugin.prepare(sim_url, "gpt-9", timeout_s=5)
    assert caught.value.code == "E003"
    assert "other" in caught.value.details[0] and "sim-llama" in caught.value.details[0]


def test_ollama_health_and_prepare_of_a_present_model(sim_url):
    plugin = get_service("ollama")
    plugin.wait_healthy(sim_url, timeout_s=5, interval_s=0.05)
    assert {"sim-llama", "sim-llama:latest"} <= ollama.local_models(sim_url, 5)
    plugin.prepare(sim_url, "sim-llama", timeout_s=10,
                   service_config={"keep_alive": "5m", "gpu_layers": 0})


def test_ollama_prepare_pulls_an_absent_model_then_loads_it_for_good(sim_url):
    """The default keep_alive is the number -1 (forever): the simulator, like Ollama, rejects
    the string "-1" (a Go duration needs a unit), so a string default would fail here."""
    assert "llama3.2:1b" not in ollama.local_models(sim_url, 5)
    get_service("ollama").prepare(sim_url, "llama3.2:1b", timeout_s=10)
    assert "llama3.2:1b" in ollama.local_models(sim_url, 5)


@pytest.mark.parametrize("given, sent", [("-1", -1), ("300", 300), ("1.5", 1.5), ("30m", "30m"),
                                         (-1, -1)])
def test_ollama_keep_alive_goes_out_as_ollama_parses_it(given, sent):
    assert ollama.keep_alive_value(given) == sent


def test_ollama_prepare_names_a_keep_alive_the_server_rejects(sim_url):
    with pytest.raises(HpcbenchError) as caught:
        get_service("ollama").prepare(sim_url, "sim-llama", timeout_s=10,
                                      service_config={"keep_alive": "forever"})
    assert caught.value.code == "E003"
    assert 'missing unit in duration "forever"' in caught.value.message


def test_ollama_pull_streams_progress_until_success(sim_url):
    progress = io.StringIO()
    ollama.pull(sim_url, "llama3.2:1b", timeout_s=10, out=progress)
    lines = progress.getvalue().splitlines()
    assert lines[0] == "ollama pull llama3.2:1b: pulling manifest"
    assert any(line.endswith("100%") for line in lines)
    assert lines[-1] == "ollama pull llama3.2:1b: success"


def test_ollama_prepare_fails_with_e003_when_the_server_is_gone():
    with pytest.raises(HpcbenchError) as caught:
        get_service("ollama").prepare(f"http://127.0.0.1:{free_port()}", "llama3", timeout_s=2)
    assert caught.value.code == "E003" and "llama3" in caught.value.message


def test_server_versions_from_the_simulators_version_endpoints(sim_url):
    """The simulator answers vLLM's /version and Ollama's /api/version with hpcbench's version;
    llama.cpp's /props and /openapi.json it does not have, so that plugin finds none."""
    expected = version("hpcbench")
    for name in ("simulator", "vllm", "ollama"):
        assert get_service(name).server_version(sim_url, timeout_s=5) == expected, name
    assert get_service("llamacpp").server_version(sim_url, timeout_s=5) is None
    assert recorded_server_version(get_service("llamacpp"), sim_url, 5) == "unknown"


def test_a_server_version_nobody_can_tell_is_unknown_not_an_error():
    class NoHook(HttpService):     # keeps ServicePlugin's default: the server does not say
        name = "third-party"

        def launch(self, ctx):
            raise AssertionError("not launched here")

    class BrokenHook(NoHook):
        def server_version(self, base_url, timeout_s):
            raise RuntimeError("a plugin bug")

    gone = f"http://127.0.0.1:{free_port()}"
    assert recorded_server_version(NoHook(), gone, 1) == "unknown"
    assert recorded_server_version(BrokenHook(), gone, 1) == "unknown"
    assert recorded_server_version(get_service("vllm"), gone, 1) == "unknown"
