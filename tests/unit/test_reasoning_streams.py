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


def test_ttfr_and_ttfa_on_hand_made_rows_start_where_ttft_starts():
    """Open loop from the intended time, closed loop from the send; failed rows and rows
    without a token of that kind have none."""
    from hpcbench.proto.samples import ErrorClass, Phase, SampleBatch, empty_columns
    cols = empty_columns(4)
    cols["intended_ns"][:] = [1_000, 2_000, 3_000, 4_000]
    cols["send_ns"][:] = [1_100, 2_500, 3_100, 4_100]
    cols["first_ns"][:] = [5_000, 6_000, 7_000, 8_000]
    cols["first_reasoning_ns"][:] = [5_000, 6_000, 0, 8_000]
    cols["first_answer_ns"][:] = [9_000, 0, 7_000, 9_000]
    cols["chunks"][:] = cols["tokens_out"][:] = [3, 1, 1, 2]
    cols["reasoning_tokens"][:] = [2, 1, 0, 1]
    cols["slot"][:] = [-1, 0, -1, -1]
    cols["error"][:] = [ErrorClass.OK, ErrorClass.OK, ErrorClass.OK, ErrorClass.TIMEOUT]
    cols["phase"][:] = Phase.MEASURED
    batch = SampleBatch("r", "t", "e", "n", 0, 0, 0, cols, np.array([1, 1, 1]))
    derived = definitions.derive(batch)
    assert derived.values["ttfr"].tolist() == [4_000, 3_500]          # closed: from the send
    assert derived.values["ttfa"].tolist() == [8_000, 4_000]
    assert derived.reasoning_tokens == 3 and derived.output_tokens == 5
    latencies = definitions.request_latencies(cols)
    assert latencies["ttfr"].tolist() == [4_000, 3_500, definitions.MISSING, definitions.MISSING]
    assert latencies["ttfa"].tolist() == [8_000, definitions.MISSING, 4_000, definitions.MISSING]


def test_live_figures_show_reasoning_only_where_there_is_some():
    from hpcbench.coordinator.session.recording import headline
    plain = {"cumulative": {"latency": {"ttft": {"p50": 5.0}, "ttfr": {"count": 0},
                                        "ttfa": {"count": 3, "p50": 5.0}}}}
    assert headline(plain)["ttfr_p50"] is None
    reasoning = {"cumulative": {"latency": {"ttft": {"p50": 5.0},
                                            "ttfr": {"count": 3, "p50": 5.0},
                                            "ttfa": {"count": 3, "p50": 9.0}}}}
    assert (headline(reasoning)["ttfr_p50"], headline(reasoning)["ttfa_p50"]) == (5.0, 9.0)


def test_the_servers_reasoning_count_wins_over_counted_chunks():
    """OpenAI's usage.completion_tokens_details.reasoning_tokens, where a server sends it."""
    from hpcbench.executor.attempt import Attempt
    from hpcbench.executor.protocols import OpenAIChat
    done = []
    attempt = Attempt(0, 0, 1, -1, OpenAIChat(), True, 1, done.append)
    attempt.on_head(200, 1)
    events = [b'{"choices":[{"delta":{"reasoning_content":"hm"}}]}',
              b'{"choices":[{"delta":{"content":"yes"}}]}',
              b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":40,'
              b'"completion_tokens_details":{"reasoning_tokens":30}}}']
    for now, event in enumerate(events, 10):
        attempt.on_body(b"data: " + event + b"\n\n", now)
    attempt.on_complete(20)
    assert done == [attempt]
    assert (attempt.first_reasoning_ns, attempt.first_answer_ns) == (10, 11)
    assert (attempt.tokens_out, attempt.reasoning_tokens) == (40, 30)
