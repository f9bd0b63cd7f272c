"""llama.cpp for real: llama-cpp-python's OpenAI server (its own venv, `make llamacpp-cpu`) with a
tiny random GGUF model generated here, launched by the `llamacpp` plugin.

The tiny model answers a prompt deterministically and never stops early, so the server's usage
for a reply (non-streaming) is the truth the executor's streamed count must match, although some
chunks of the stream carry empty text (byte tokens that end no UTF-8 character).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from support.ports import free_port
from support.tiny_models import make_tiny_gguf

from hpcbench.coordinator.session.results import read_samples
from hpcbench.executor.engine import client_request_id
from hpcbench.executor.sinks import read_batches
from hpcbench.proto.samples import ErrorClass, TokenSource
from hpcbench.servers.plugin import LaunchContext, http_get, http_post_json
from hpcbench.servers.registry import get_service
from tests.support.sample_rows import measured_rows
from tests.support.standalone_server import start_server, stop_server

LLAMACPP_VENV = Path(os.environ.get("HPCBENCH_LLAMACPP_VENV",
                                    "/var/cache/hpcbench/llamacpp-venv"))
LLAMACPP_PYTHON = LLAMACPP_VENV / "bin" / "python"
MAX_TOKENS = 12

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LLAMACPP_PYTHON.exists(),
                       reason=f"llama-cpp-python not installed in {LLAMACPP_VENV} "
                              "(run `make llamacpp-cpu`)"),
]


def service_config(model_path: Path) -> dict:
    return {"python": str(LLAMACPP_PYTHON), "model_path": str(model_path), "n_ctx": 512}


@pytest.fixture(scope="module")
def gguf(tmp_path_factory) -> Path:
    return make_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def llama_server(gguf, tmp_path_factory):
    work = tmp_path_factory.mktemp("llamacpp")
    plugin = get_service("llamacpp")
    ctx = LaunchContext(service_config=service_config(gguf), model="tiny", node="localhost",
                        address="127.0.0.1", port=free_port(), run_dir=work)
    spec = plugin.launch(ctx)
    process = start_server(spec, work / "llamacpp.log")
    try:
        plugin.wait_healthy(spec.base_url, timeout_s=120, interval_s=0.2)
        plugin.prepare(spec.base_url, "tiny", timeout_s=10)
        yield spec.base_url
    finally:
        stop_server(process)


PROMPT = "the time of day"


def chat(base_url: str, stream: bool) -> bytes:
    body = {"model": "tiny", "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": MAX_TOKENS, "stream": stream}
    with http_post_json(base_url + "/v1/chat/completions", body, timeout_s=60) as response:
        return response.read()


def stream_contents(base_url: str) -> list[str]:
    """The `content` of every chunk of one streamed reply, parsed independently of hpcbench."""
    contents = []
    for line in chat(base_url, stream=True).decode().splitlines():
        if line.startswith("data: {"):
            delta = json.loads(line[6:])["choices"][0]["delta"]
            if "content" in delta:
                contents.append(delta["content"])
    return contents


def executor_run(base_url: str, out: Path, env: dict, *extra: str) -> dict:
    """hpcbench-executor on the one-prompt dataset; numpy columns of all its requests."""
    dataset = out.with_suffix(".jsonl")
    dataset.write_text(json.dumps({"prompt": PROMPT}) + "\n")
    run = subprocess.run(
        [str(Path(sys.executable).with_name("hpcbench-executor")), "--target", base_url,
         "--api", "openai-chat", "--model", "tiny", "--concurrency", "1", "--duration", "2s",
         "--dataset", "jsonl", "--dataset-path", str(dataset),
         "--output-tokens", str(MAX_TOKENS), "--out", str(out), *extra],
        env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    batches = list(read_batches(out))
    return {name: np.concatenate([b.columns[name] for b in batches])
            for name in ("error", "tokens_out", "token_source")}


def test_streamed_token_counts_equal_server_usage(llama_server, tmp_path, cli_env):
    """The reply is deterministic: the server's usage (non-streaming) gives its token count; the
    stream of the same reply has that many chunks, some with empty text, and the executor
    counts every one of them as a token."""
    usage = json.loads(chat(llama_server, stream=False))["usage"]["completion_tokens"]
    contents = stream_contents(llama_server)
    assert len(contents) == usage >= MAX_TOKENS  # llama.cpp may finish a UTF-8 character
    assert "" in contents  # byte tokens that end no UTF-8 character arrive as empty text

    streamed = executor_run(llama_server, tmp_path / "stream.bin", cli_env)
    whole = executor_run(llama_server, tmp_path / "whole.bin", cli_env, "--no-stream")
    for columns, source in ((streamed, TokenSource.COUNTED), (whole, TokenSource.SERVER)):
        assert len(columns["error"]) >= 2
        assert set(columns["error"].tolist()) == {int(ErrorClass.OK)}
        assert set(columns["tokens_out"].tolist()) == {usage}
        assert set(columns["token_source"].tolist()) == {int(source)}


def test_server_version_is_the_installed_llama_cpp_python(llama_server):
    """llama-cpp-python has no version endpoint; its OpenAPI document carries the version."""
    installed = subprocess.run([str(LLAMACPP_PYTHON), "-c", "import llama_cpp; "
                                "print(llama_cpp.__version__)"], capture_output=True, text=True,
                               check=True).stdout.strip()
    assert get_service("llamacpp").server_version(llama_server, timeout_s=10) == \
        f"llama-cpp-python {installed}"


def test_llama_cpp_python_serves_no_prometheus_metrics(llama_server):
    """What the installed llama.cpp exposes: llama-cpp-python's server has no /metrics (only
    llama.cpp's own llama-server has one, with --metrics), so the plugin gives monitors
    nothing to scrape for it."""
    status, _ = http_get(llama_server + "/metrics", timeout_s=10)
    assert status == 404
    assert get_service("llamacpp").metrics_path_for(service_config(Path("m.gguf"))) is None


def test_request_ids_are_uuids_llama_cpp_accepts():
    """llama-cpp-python answers 400 to a non-UUID X-Request-Id (found here, fixed in the
    executor): ids stay UUID-shaped and distinct per executor and request."""
    ids = {client_request_id(executor, n) for executor in ("executor-0", "executor-1")
           for n in (0, 1, 2**48 + 5)}
    assert len(ids) == 6
    for value in ids:
        uuid.UUID(value, version=4)


def test_hpcbench_run_end_to_end(gguf, tmp_path, cli_env):
    """`hpcbench run` deploys llama.cpp through the plugin, benchmarks it and stops it."""
    recipe = {
        "scenario": "llamacpp-e2e", "runtime": "process", "orchestration": {"mode": "local"},
        "workload": {"service": "llamacpp", "model": "tiny", "api": "openai-chat",
                     "duration": "3s", "warmup": "0s", "concurrency": 2,
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 16},
                                 "output_tokens": {"distribution": "fixed",
                                                   "mean": MAX_TOKENS},
                                 "ignore_eos": False}},
        "servers": {"health_check": {"timeout": 120, "interval": 1},
                    "service_config": service_config(gguf)},
        "results_dir": str(tmp_path / "results"),
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = subprocess.run([str(Path(sys.executable).with_name("hpcbench")), "run", str(path)],
                         env=cli_env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    summaries = list((tmp_path / "results").rglob("default/summary.json"))
    assert len(summaries) == 1, "one trial, one summary"
    overall = json.loads(summaries[0].read_text())["overall"]
    # concurrent streams do not reset each other (interrupt_requests is off by default)
    assert overall["requests"] >= 2 and overall["error_total"] == 0, overall["errors"]
    # llama-cpp-python streams no usage: each request's count is its chunks, empty-text ones
    # included (equal to the server's usage: test_streamed_token_counts_equal_server_usage),
    # and the trial's total is their sum
    rows, _ = measured_rows(read_samples(summaries[0].parent / "samples.msgpack"))
    assert set(rows["token_source"].tolist()) == {int(TokenSource.COUNTED)}
    assert (rows["tokens_out"] == rows["chunks"]).all() and rows["tokens_out"].min() > 0
    assert overall["output_tokens"] == int(rows["tokens_out"].sum())
    # no /metrics to scrape: no server view is kept, and the report says why
    summary = json.loads(summaries[0].read_text())
    assert "server" not in summary
    assert not (summaries[0].parent / "server_metrics.csv").exists()
    report = (summaries[0].parent.parent / "report.html").read_text()
    assert "Not measured: no monitor scraped the server" in report and "llamacpp" in report
