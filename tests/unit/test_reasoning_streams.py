"""Reasoning tokens: streams whose first tokens are reasoning content are split into time to
first reasoning token / first answer token and reasoning / answer counts (docs/metrics.md).
The executor runs against the simulator emitting reasoning (its `reasoning_fraction`)."""
import numpy as np
import pytest

from hpcbench.common.measure import definitions
from hpcbench.common.measure.buckets import HistogramConfig
from hpcbench.common.measure.statistics import MetricSet
from hpcbench.servers.simulator import start_simulator
from tests.support.executor_runs import rows, run_load

FIXED = dict(mode="fixed", ttft_ms=2, itl_ms=2)


@pytest.mark.parametrize("api, field", [("openai-chat", "reasoning"),
                                        ("openai-chat", "reasoning_content"),
                                        ("ollama-chat", "reasoning"),
                                        ("ollama-generate", "reasoning")])
def test_reasoning_chunks_are_timed_and_counted_apart(api, field):
    with start_simulator(reasoning_fraction=0.25, reasoning_field=field, **FIXED) as sim:
        _, batches = run_load(sim.url, api=api, max_requests=4)
    got = rows(batches)
    assert (got["error"] == 0).all() and (got["chunks"] == 8).all()
    assert (got["tokens_out"] == 8).all() and (got["reasoning_tokens"] == 2).all()
    assert (got["first_reasoning_ns"] == got["first_ns"]).all()
    # the answer starts with the third token: two gaps after the first (reasoning) one
    assert (got["first_answer_ns"] > got["first_reasoning_ns"]).all()
    metrics = definitions.derive(batches[0])
    assert len(metrics.values["ttfr"]) == len(metrics.values["ttfa"]) == batches[0].n
    assert (metrics.values["ttfa"] > metrics.values["ttfr"]).all()
    np.testing.assert_array_equal(metrics.values["ttfr"], metrics.values["ttft"])


def test_a_stream_without_reasoning_has_no_reasoning_figures():
    with start_simulator(**FIXED) as sim:
        _, batches = run_load(sim.url, max_requests=3)
    got = rows(batches)
    assert (got["reasoning_tokens"] == 0).all() and (got["first_reasoning_ns"] == 0).all()
    assert (got["first_answer_ns"] == got["first_ns"]).all()      # ttfa = ttft
    metrics = definitions.derive(batches[0])
    assert len(metrics.values["ttfr"]) == 0
    np.testing.assert_array_equal(metrics.values["ttfa"], metrics.values["ttft"])


def test_whole_answers_mark_reasoning_but_count_it_only_from_the_server():
    """Non-streamed: no chunk times; only usage.completion_tokens_details would count it."""
    with start_simulator(reasoning_fraction=0.5, **FIXED) as sim:
        _, batches = run_load(sim.url, stream=False, max_requests=2)
    got = rows(batches)
    assert (got["error"] == 0).all() and (got["first_reasoning_ns"] > 0).all()
    assert (got["reasoning_tokens"] == 0).all()   # the simulator, like vLLM, gives no count


def test_summary_counts_reasoning_and_answer_tokens():
    with start_simulator(reasoning_fraction=0.5, **FIXED) as sim:
        _, batches = run_load(sim.url, max_requests=3)
    metric_set = MetricSet(HistogramConfig())
    for batch in batches:
        metric_set.add(definitions.derive(batch), {})
    stats = metric_set.stats(1.0, False)
    assert stats["output_tokens"] == 24
    assert stats["reasoning_tokens"] == 12 and stats["answer_tokens"] == 12
