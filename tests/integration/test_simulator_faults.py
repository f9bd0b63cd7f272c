"""Each injected fault behaves as configured, and the CLI process (`hpcbench sim`) works."""
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import httpx
import openai
import pytest

from hpcbench.servers.simulator import start_simulator
from tests.support.waiting import wait_until

FAST = dict(mode="fixed", ttft_ms=1, itl_ms=1, record_truth=True)
CHAT = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6,
        "stream": True}


def client(sim) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)


@pytest.mark.parametrize("status, error", [(500, openai.InternalServerError),
                                           (429, openai.RateLimitError),
                                           (503, openai.InternalServerError)])
def test_error_rate_answers_with_the_configured_status(status, error):
    with start_simulator(**FAST, error_rate=1.0, error_status=status) as sim:
        with pytest.raises(error) as caught:
            client(sim).chat.completions.create(**CHAT)
        assert caught.value.status_code == status
        assert sim.served == 0 and sim.stats()["faults"] == {"error": 1}
        assert sim.truth[0]["outcome"] == "error" and sim.truth[0]["status"] == status


def test_error_rate_is_a_deterministic_fraction_by_seed():
    def outcomes(seed):
        with start_simulator(**FAST, error_rate=0.3, seed=seed) as sim:
            api = client(sim)
            result = []
            for _ in range(40):
                try:
                    api.completions.create(model="sim-model", prompt="x", max_tokens=1)
                    result.append("ok")
                except openai.InternalServerError:
                    result.append("error")
            return result
    first = outcomes(3)
    assert first == outcomes(3)
    assert 4 <= first.count("error") <= 24


def test_stall_delays_the_chosen_token():
    with start_simulator(**FAST, stall_ms=80, stall_at_token=3) as sim:
        list(client(sim).chat.completions.create(**CHAT))
        times = sim.truth[0]["token_perf_ns"]
    gaps = [(b - a) / 1e6 for a, b in zip(times, times[1:])]
    assert gaps[1] >= 80                      # token 3 came at least 80 ms after token 2
    assert sim.truth[0]["outcome"] == "served"


def test_disconnect_cuts_the_stream_after_the_chosen_token():
    with start_simulator(**FAST, disconnect_rate=1.0, disconnect_at_token=2) as sim:
        received = []
        with pytest.raises((openai.APIConnectionError, httpx.RemoteProtocolError,
                            httpx.ReadError)):
            for chunk in client(sim).chat.completions.create(**CHAT):
                received.append(chunk.choices[0].delta.content)
        assert len(received) == 2
        assert sim.served == 0 and sim.truth[0]["outcome"] == "disconnect"
        assert sim.stats()["running"] == 0


def test_no_token_fault_is_http_200_with_an_empty_stream():
    with start_simulator(**FAST, no_token_rate=1.0) as sim:
        chunks = list(client(sim).chat.completions.create(
            **CHAT, stream_options={"include_usage": True}))
        assert all(not c.choices for c in chunks)
        assert chunks[-1].usage.completion_tokens == 0
        body = urllib.request.urlopen(urllib.request.Request(
            sim.url + "/api/generate", data=json.dumps(
                {"model": "sim-model", "prompt": "x"}).encode())).read()
        lines = [json.loads(line) for line in body.splitlines()]
        assert len(lines) == 1 and lines[0]["done"] and lines[0]["eval_count"] == 0
        assert sim.served == 0 and sim.stats()["faults"] == {"no_token": 2}


def status_of(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=5).status
    except urllib.error.HTTPError as error:
        return error.code


def test_not_ready_answers_503_until_the_time_has_passed():
    with start_simulator(**FAST, not_ready_s=2) as sim:
        assert status_of(sim.url + "/health") == 503
        assert status_of(sim.url + "/v1/models") == 503
        assert status_of(sim.url + "/metrics") == 200
        wait_until(lambda: status_of(sim.url + "/health") == 200, timeout=10,
                   what="the simulator to become ready")
        assert status_of(sim.url + "/v1/models") == 200


def test_server_pause_freezes_every_stream():
    with start_simulator(mode="fixed", ttft_ms=1, itl_ms=5, record_truth=True,
                         pause_at_s=0.05, pause_ms=150) as sim:
        list(client(sim).chat.completions.create(**CHAT | {"max_tokens": 60}))
        times = sim.truth[0]["token_perf_ns"]
    assert max((b - a) / 1e6 for a, b in zip(times, times[1:])) >= 150


@pytest.fixture
def sim_process(tmp_path, cli_env):
    port_file, truth_file = tmp_path / "port", tmp_path / "truth.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "hpcbench.coordinator.cli.main", "sim", "--port", "0", "--port-file",
         str(port_file), "--truth", str(truth_file), "--mode", "fixed", "--ttft-ms", "1",
         "--itl-ms", "1", "--model", "tiny"], env=cli_env, stderr=subprocess.PIPE, text=True)
    try:
        port = int(wait_until(lambda: port_file.exists() and port_file.read_text(), timeout=30,
                              what="the port file"))
        yield process, port, truth_file
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        process.stderr.close()


def test_cli_writes_the_port_file_serves_and_dumps_truth_on_sigterm(sim_process):
    process, port, truth_file = sim_process
    with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x") as api:
        reply = api.completions.create(model="tiny", prompt="a b", max_tokens=3)
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    records = [json.loads(line) for line in truth_file.read_text().splitlines()]
    assert [r["id"] for r in records] == [reply.id]
    assert len(records[0]["token_perf_ns"]) == 3
    assert "serving tiny on http://127.0.0.1:" in process.stderr.read()


def test_cli_workers_share_one_port_and_report_all_requests(tmp_path, cli_env):
    port_file, truth_file = tmp_path / "port", tmp_path / "truth.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "hpcbench.coordinator.cli.main", "sim", "--workers", "2", "--port", "0",
         "--port-file", str(port_file), "--truth", str(truth_file), "--mode", "fixed",
         "--ttft-ms", "1", "--itl-ms", "1"], env=cli_env, stderr=subprocess.DEVNULL)
    try:
        url = "http://127.0.0.1:" + wait_until(
            lambda: port_file.exists() and port_file.read_text().strip(), timeout=30,
            what="the port file")
        for _ in range(24):   # a new connection each: the kernel spreads them over the workers
            urllib.request.urlopen(urllib.request.Request(
                url + "/v1/completions", data=json.dumps(
                    {"model": "sim-model", "prompt": "x", "max_tokens": 2}).encode()),
                timeout=10).read()
        stats = json.loads(urllib.request.urlopen(url + "/sim/stats", timeout=10).read())
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert stats["served"] == 24 and stats["generation_tokens"] == 48
    records = [json.loads(line) for line in truth_file.read_text().splitlines()]
    ids = {record["id"] for record in records}
    assert len(records) == len(ids) == 24
    numbers = {int(ident.rsplit("-", 1)[1]) % 2 for ident in ids}
    assert numbers == {0, 1}   # worker 0 numbers its requests 1, 3, ...; worker 1: 2, 4, ...


def test_cli_rejects_a_bad_flag_value_with_the_field_name(cli_env):
    result = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "sim",
                             "--error-status", "404"], env=cli_env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "error E006" in result.stderr and "error_status=404" in result.stderr


def test_in_process_start_on_a_busy_port_raises_a_clear_error():
    from hpcbench.common.errors import HpcbenchError
    with start_simulator(**FAST) as sim:
        with pytest.raises(HpcbenchError) as caught:
            start_simulator(port=sim.port)
    assert caught.value.code == "E008" and str(sim.port) in caught.value.message


def test_cli_reports_a_busy_port(cli_env):
    with start_simulator(**FAST) as sim:
        result = subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", "sim",
                                 "--port", str(sim.port)], env=cli_env, capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 18 and "--port" in result.stderr


def test_service_config_round_trips_through_the_cli_flags():
    from dataclasses import fields, replace

    from hpcbench.coordinator.cli.main import build_parser
    from hpcbench.servers.plugin import cli_flags
    from hpcbench.servers.simulator import SimulatorConfig
    service_config = {"model": "m", "seed": 3, "mode": "fixed", "ttft_ms": 2.5, "itl_ms": 0.5,
                      "max_num_seqs": 8, "error_rate": 0.25, "error_status": 429,
                      "record_truth": True, "extra_models": ["a", "b"], "not_ready_s": 1}
    args = build_parser().parse_args(["sim", *cli_flags(service_config)])
    parsed = SimulatorConfig(**{spec.name: getattr(args, spec.name)
                                for spec in fields(SimulatorConfig)})
    assert parsed == replace(SimulatorConfig(), **service_config)
