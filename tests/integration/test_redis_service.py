"""Redis for real (Debian redis-server): the plugin launches and checks it, and the executor's
RESP protocol measures it through the same Attempt -> SampleRecorder pipeline as HTTP."""
from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.ports import free_port

from hpcbench.common.errors import HpcbenchError
from hpcbench.executor.attempt import Attempt
from hpcbench.executor.datasets import Prompt
from hpcbench.executor.http import ConnectionPool
from hpcbench.executor.recorder import SampleRecorder
from hpcbench.executor.resp import RespConnection, RespProtocol, encode_command, reply_end
from hpcbench.executor.sinks import read_batches
from hpcbench.executor.wire import RequestInput
from hpcbench.proto.samples import ErrorClass, Phase
from hpcbench.servers.plugin import LaunchContext
from hpcbench.servers.registry import get_service
from tests.support.standalone_server import start_server, stop_server

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server not installed (make system-deps)")


@pytest.fixture
def redis_url(tmp_path):
    plugin = get_service("redis")
    ctx = LaunchContext(service_config={"dir": str(tmp_path)}, model=None, node="localhost",
                        address="127.0.0.1", port=free_port(), run_dir=tmp_path)
    spec = plugin.launch(ctx)
    process = start_server(spec, tmp_path / "redis.log")
    try:
        plugin.wait_healthy(spec.base_url, timeout_s=20, interval_s=0.05)
        plugin.prepare(spec.base_url, None, timeout_s=5)
        yield spec.base_url
    finally:
        stop_server(process)


def test_resp_reply_framing():
    assert encode_command("GET", "k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert reply_end(b"+OK\r\n") == 5
    assert reply_end(b"$5\r\nhel") == -1
    assert reply_end(b"$5\r\nhello\r\n") == 11
    assert reply_end(b"$-1\r\n") == 5
    assert reply_end(b"*2\r\n:1\r\n$1\r\nx\r\n") == 15
    assert reply_end(b"*2\r\n:1\r\n") == -1
    with pytest.raises(ValueError):
        reply_end(b"HTTP/1.1 200 OK\r\n")


def run_commands(url: str, commands: list[bytes]) -> list[Attempt]:
    """Send each command through the executor's pool and Attempt; return the finished ones."""
    host, port = url.removeprefix("redis://").rsplit(":", 1)
    protocol = RespProtocol()
    done: list[Attempt] = []

    async def main():
        pool = ConnectionPool(host, int(port), RespConnection)
        loop = asyncio.get_running_loop()
        try:
            for index, command in enumerate(commands):
                finished = loop.create_future()

                def on_done(attempt, finished=finished):
                    done.append(attempt)
                    finished.set_result(None)

                attempt = Attempt(index, 0, Phase.MEASURED, 0, protocol, True, 1, on_done)
                pool.send(command, attempt)
                await asyncio.wait_for(finished, 10)
        finally:
            pool.close()

    asyncio.run(main())
    return done


def test_redis_launched_by_plugin_answers_resp_through_the_executor_pipeline(redis_url):
    prompts = [Prompt("hello redis", 3, None), Prompt("", 1, None), Prompt("x" * 5000, 1250, None),
               Prompt("", 1, None)]
    protocol = RespProtocol()
    commands = [protocol.request(RequestInput("unused", prompt.text, None, True, False,
                                              index=index, executor_index=3))
                for index, prompt in enumerate(prompts)]
    assert commands[1] == encode_command("GET", "hpcbench:3:0")
    attempts = run_commands(redis_url, commands + [encode_command("NOSUCHCOMMAND")])

    assert [a.error for a in attempts] == [ErrorClass.OK] * 4 + [ErrorClass.HTTP_STATUS]
    for attempt in attempts[:4]:
        assert attempt.send_ns < attempt.first_ns <= attempt.end_ns
        assert attempt.chunks == 1 and attempt.tokens_out == 1
    recorder = SampleRecorder("run", "trial", "executor-3", "localhost", 0)
    for attempt in attempts:
        recorder.add(attempt)
    batch = recorder.cut(0)
    assert list(batch.columns["error"]) == [0, 0, 0, 0, int(ErrorClass.HTTP_STATUS)]
    assert all(batch.columns["end_ns"] >= batch.columns["send_ns"])


def test_redis_server_version_is_the_one_installed(redis_url):
    """`INFO server` gives the version `redis-server --version` prints (v=7.0.15 ...)."""
    printed = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                             check=True).stdout
    installed = printed.split("v=", 1)[1].split()[0]
    assert get_service("redis").server_version(redis_url, timeout_s=5) == installed


def test_redis_value_round_trips(redis_url):
    """The GET really returns what the SET stored: read it back with a plain socket."""
    run_commands(redis_url, [encode_command("SET", "k", "v" * 3000)])
    host, port = redis_url.removeprefix("redis://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(encode_command("STRLEN", "k"))
        assert conn.recv(64) == b":3000\r\n"


def test_connection_refused_is_classified():
    attempts = run_commands(f"redis://127.0.0.1:{free_port()}", [encode_command("PING")])
    assert attempts[0].error == ErrorClass.CONNECTION_REFUSED


def test_unhealthy_redis_is_e001(tmp_path):
    with pytest.raises(HpcbenchError) as caught:
        get_service("redis").wait_healthy(f"redis://127.0.0.1:{free_port()}", 0.2, 0.05)
    assert caught.value.code == "E001"


def test_hpcbench_executor_benchmarks_redis_into_sample_batches(redis_url, tmp_path, cli_env):
    """The standalone executor with api resp: same engine, recorder and file sink as HTTP."""
    out = tmp_path / "samples.bin"
    run = subprocess.run(
        [str(Path(sys.executable).with_name("hpcbench-executor")), "--target", redis_url,
         "--api", "resp", "--model", "unused", "--concurrency", "4", "--duration", "1s",
         "--input-tokens", "64",
         "--out", str(out)], env=cli_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    batches = list(read_batches(out))
    errors = [int(e) for batch in batches for e in batch.columns["error"]]
    assert len(errors) > 100 and set(errors) == {int(ErrorClass.OK)}
    for batch in batches:
        assert (batch.columns["first_ns"] >= batch.columns["send_ns"]).all()
        assert set(batch.columns["chunks"].tolist()) == {1}


def test_hpcbench_run_deploys_redis_and_measures_it(tmp_path, cli_env):
    """`hpcbench run` with service redis: the plugin starts redis-server, the executor speaks
    RESP (the api comes from the plugin), and the results look like any other trial's."""
    recipe = {"scenario": "redis-e2e", "runtime": "process", "orchestration": {"mode": "local"},
              "workload": {"service": "redis", "model": "none", "duration": "2s",
                           "warmup": "0s", "concurrency": 4},
              "results_dir": str(tmp_path / "results")}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = subprocess.run([str(Path(sys.executable).with_name("hpcbench")), "run", str(path)],
                         env=cli_env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    summaries = list((tmp_path / "results").rglob("default/summary.json"))
    assert len(summaries) == 1
    overall = json.loads(summaries[0].read_text())["overall"]
    assert overall["requests"] > 100 and overall["error_total"] == 0
    assert overall["latency"]["ttft"]["count"] == overall["requests"]
