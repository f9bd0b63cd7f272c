"""The simulator's prefix cache (servers/simulator/prefix_cache.py): block hits, LRU eviction,
and the timing model's prefill spared for cached prefixes (checked against its ground truth)."""
import json
import urllib.request

from hpcbench.servers.simulator import SimulatorConfig, start_simulator
from hpcbench.servers.simulator.prefix_cache import PrefixCache


def words(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{index}" for index in range(count)]


def test_only_whole_blocks_of_a_shared_prefix_hit():
    cache = PrefixCache(capacity_tokens=1000, block_tokens=4)
    shared = words("s", 10)
    assert cache.admit(shared + words("a", 5)) == 0
    # 10 shared tokens: two whole blocks (8 tokens) match, the third block differs
    assert cache.admit(shared + words("b", 5)) == 8
    assert cache.admit(words("x", 2) + shared) == 0      # the same tokens later: no prefix
    assert cache.admit(shared[:8]) == 7                  # at least one token is computed


def test_the_least_recently_used_blocks_are_evicted_first():
    cache = PrefixCache(capacity_tokens=8, block_tokens=4)   # two blocks
    one, two, three = words("a", 4), words("b", 4), words("c", 4)
    cache.admit(one + ["z"])
    cache.admit(two + ["z"])
    assert cache.admit(one + ["y"]) == 4       # refreshes `one`: `two` is now the oldest
    cache.admit(three + ["z"])                 # evicts `two`
    assert cache.admit(three + ["y"]) == 4 and cache.admit(one + ["y"]) == 4
    assert cache.admit(two + ["y"]) == 0       # (and is cached again, evicting `three`)


def test_a_cached_prefix_spares_its_prefill_and_shows_in_the_metrics():
    config = SimulatorConfig(prefill_base_ms=0, prefill_ms_per_token=1, decode_base_ms=1,
                             prefix_caching=True, prefix_block_tokens=16, record_truth=True)
    prefix = " ".join(words("p", 320))

    def chat(suffix: str) -> None:
        body = {"model": "sim-model", "max_tokens": 1,
                "messages": [{"role": "user", "content": f"{prefix} {suffix}"}]}
        urllib.request.urlopen(urllib.request.Request(
            sim.url + "/v1/chat/completions", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}), timeout=30).read()

    with start_simulator(config) as sim:
        chat("first question")
        chat("second question")
        text = urllib.request.urlopen(sim.url + "/metrics", timeout=10).read().decode()
        cold, warm = sim.truth
    ttft = [(r["token_perf_ns"][0] - r["arrival_perf_ns"]) / 1e6 for r in (cold, warm)]
    assert ttft[0] >= 322               # the model's bound: every prompt token prefilled
    assert ttft[1] < ttft[0] / 4        # 320 of 322 tokens cached: 2 ms of prefill left
    assert 'vllm:prefix_cache_queries_total{model_name="sim-model"} 644' in text
    assert 'vllm:prefix_cache_hits_total{model_name="sim-model"} 320' in text


def test_without_prefix_caching_nothing_is_cached():
    config = SimulatorConfig(prefill_base_ms=0, prefill_ms_per_token=0, decode_base_ms=1)
    with start_simulator(config) as sim:
        for _ in range(2):
            urllib.request.urlopen(urllib.request.Request(
                sim.url + "/v1/completions", data=json.dumps(
                    {"model": "sim-model", "prompt": " ".join(words("w", 64)),
                     "max_tokens": 1}).encode(),
                headers={"Content-Type": "application/json"}), timeout=30).read()
        text = urllib.request.urlopen(sim.url + "/metrics", timeout=10).read().decode()
    assert 'vllm:prefix_cache_hits_total{model_name="sim-model"} 0' in text
