"""Batched OpenAI completions: a `prompt` list gets one choice per prompt, as vLLM answers it.

One HTTP request stays one served request (/metrics, truth record) whatever its prompt count,
so a load generator's request rows and the simulator's served count compare; tokens add up.
"""
from collections import Counter

import openai
import pytest

from hpcbench.servers.simulator import SimulatorConfig, start_simulator
from tests.support.waiting import wait_until

FAST = dict(mode="fixed", ttft_ms=2, itl_ms=1, record_truth=True)
PROMPTS = ["one two", "three four five", "six"]


@pytest.fixture
def sim():
    with start_simulator(SimulatorConfig(**FAST)) as handle:
        yield handle


@pytest.fixture
def client(sim):
    with openai.OpenAI(base_url=sim.url + "/v1", api_key="unused", max_retries=0) as api:
        yield api


def test_a_prompt_list_gets_one_choice_per_prompt_and_summed_usage(client, sim):
    reply = client.completions.create(model="sim-model", prompt=PROMPTS, max_tokens=4)
    assert [choice.index for choice in reply.choices] == [0, 1, 2]
    assert all(len(choice.text.split()) == 4 for choice in reply.choices)
    assert [choice.finish_reason for choice in reply.choices] == ["length"] * 3
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (6, 12)
    # each choice is the text its prompt alone would get (same seed, same prompt)
    alone = client.completions.create(model="sim-model", prompt=PROMPTS[1], max_tokens=4)
    assert reply.choices[1].text == alone.choices[0].text
    assert sim.served == 2
    first = sim.truth[0]
    assert (first["outcome"], first["prompts"], first["prompt_tokens"],
            first["completion_tokens"], len(first["token_perf_ns"])) == ("served", 3, 6, 12, 12)
    assert first["finish_reasons"] == ["length"] * 3


def test_a_streamed_prompt_list_interleaves_choices_by_index(client, sim):
    chunks = list(client.completions.create(
        model="sim-model", prompt=PROMPTS, max_tokens=5, stream=True,
        stream_options={"include_usage": True}))
    tokens = Counter(c.choices[0].index for c in chunks if c.choices and c.choices[0].text)
    assert tokens == {0: 5, 1: 5, 2: 5}
    assert all(len(c.choices) == 1 for c in chunks if c.choices)   # one choice per event
    token_order = [c.choices[0].index for c in chunks if c.choices and c.choices[0].text]
    assert token_order[:3] == [0, 1, 2]          # generated together, so interleaved
    finished = [c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason]
    assert sorted(finished) == [0, 1, 2]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 15
    assert chunks[-1].usage.prompt_tokens == 6
    assert sim.served == 1 and sim.stats()["finished"] == {"length": 3}
    assert len(sim.truth) == 1 and len(sim.truth[0]["token_perf_ns"]) == 15


def test_token_id_lists_count_as_prompts(client):
    reply = client.completions.create(model="sim-model", prompt=[[1, 2, 3], [4, 5]],
                                      max_tokens=2)
    assert len(reply.choices) == 2 and reply.usage.prompt_tokens == 5


def test_a_bad_prompt_in_the_list_is_a_400_naming_it(client, sim):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="sim-model", prompt=["fine", {"no": 1}], max_tokens=2)
    assert "prompt[1]" in str(caught.value)
    assert sim.served == 0 and sim.stats()["running"] == 0


def test_a_client_leaving_a_batched_stream_frees_every_slot(client, sim):
    stream = client.completions.create(model="sim-model", prompt=PROMPTS, max_tokens=500,
                                       stream=True)
    next(iter(stream))
    stream.close()
    wait_until(lambda: sim.stats()["cancelled"] == 1 and sim.stats()["running"] == 0,
               what="the batched request cancelled, every prompt's slot freed")
    assert [record["outcome"] for record in sim.truth] == ["cancelled"]
    assert sim.served == 0


def test_prompts_of_one_request_queue_for_batch_slots_like_separate_sequences():
    """Model mode, 2 slots: a 5-prompt request runs 2 prompts at a time, the rest wait."""
    with start_simulator(SimulatorConfig(max_num_seqs=2, decode_base_ms=1, prefill_base_ms=1,
                                         record_truth=True)) as sim:
        with openai.OpenAI(base_url=sim.url + "/v1", api_key="unused", max_retries=0) as api:
            reply = api.completions.create(model="sim-model", prompt=["a"] * 5, max_tokens=3)
        assert len(reply.choices) == 5 and reply.usage.completion_tokens == 15
        stats = sim.stats()
        assert (stats["served"], stats["running"], stats["waiting"]) == (1, 0, 0)
        [record] = sim.truth
        assert record["prompts"] == 5 and len(record["token_perf_ns"]) == 15


def test_a_no_token_fault_empties_every_choice_and_counts_once():
    with start_simulator(SimulatorConfig(**FAST, no_token_rate=1.0)) as sim:
        with openai.OpenAI(base_url=sim.url + "/v1", api_key="unused", max_retries=0) as api:
            chunks = list(api.completions.create(
                model="sim-model", prompt=PROMPTS, max_tokens=3, stream=True,
                stream_options={"include_usage": True}))
        assert not [c for c in chunks if c.choices and c.choices[0].text]
        assert chunks[-1].usage.completion_tokens == 0
        assert sim.stats()["faults"] == {"no_token": 1} and sim.served == 0
        assert [record["outcome"] for record in sim.truth] == ["no_token"]
