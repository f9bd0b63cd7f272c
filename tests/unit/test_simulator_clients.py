"""The official `openai` and `ollama` Python clients work against the simulator."""
import ollama
import openai
import pytest

from hpcbench.servers.simulator import SimulatorConfig, start_simulator

FAST = dict(mode="fixed", ttft_ms=2, itl_ms=1)


@pytest.fixture
def sim():
    with start_simulator(SimulatorConfig(**FAST)) as handle:
        yield handle


@pytest.fixture
def client(sim):
    with openai.OpenAI(base_url=sim.url + "/v1", api_key="unused", max_retries=0) as api:
        yield api


def test_openai_chat_streaming_sends_one_chunk_per_token_and_usage(client, sim):
    stream = client.chat.completions.create(
        model="sim-model", messages=[{"role": "user", "content": "three word prompt"}],
        max_tokens=7, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 7
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 7, 10)
    assert sim.served == 1


def test_openai_chat_non_streaming_has_message_and_usage(client):
    reply = client.chat.completions.create(
        model="sim-model", messages=[{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": "hello"}],
        max_completion_tokens=5)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert len(reply.choices[0].message.content.split()) == 5
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 5)


def test_openai_completions_stream_and_whole(client):
    stream = client.completions.create(model="sim-model", prompt="one two", max_tokens=4,
                                       stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert len(texts) == 4 and chunks[-1].usage.completion_tokens == 4
    whole = client.completions.create(model="sim-model", prompt="one two", max_tokens=4)
    assert whole.choices[0].text == "".join(texts)   # same prompt, same seed: same text
    assert whole.usage.completion_tokens == 4


def test_openai_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list()] == ["sim-model"]


def test_openai_unknown_model_is_a_404_naming_the_served_ones(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert "sim-model" in str(caught.value)


def test_openai_bad_max_tokens_is_a_400_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="sim-model", prompt="x", max_tokens=0)
    assert "max_tokens" in str(caught.value)


def test_ollama_generate_streaming_and_final_statistics(sim):
    api = ollama.Client(host=sim.url)
    parts = list(api.generate(model="sim-model", prompt="why is the sky blue",
                              options={"num_predict": 6}, stream=True))
    tokens, final = parts[:-1], parts[-1]
    assert len(tokens) == 6 and all(p.response for p in tokens) and not any(p.done for p in tokens)
    assert final.done and final.done_reason == "length"
    assert (final.eval_count, final.prompt_eval_count) == (6, 5)
    assert final.total_duration >= final.prompt_eval_duration + final.eval_duration > 0
    assert final.eval_duration >= 5 * 1_000_000        # 5 gaps of at least 1 ms, in ns


def test_ollama_chat_streaming_and_non_streaming(sim):
    api = ollama.Client(host=sim.url)
    messages = [{"role": "user", "content": "hi there"}]
    parts = list(api.chat(model="sim-model", messages=messages, stream=True,
                          options={"num_predict": 3}))
    assert [p.message.role for p in parts[:-1]] == ["assistant"] * 3
    assert parts[-1].done and parts[-1].eval_count == 3
    whole = api.chat(model="sim-model", messages=messages, options={"num_predict": 3})
    assert whole.message.content == "".join(p.message.content for p in parts)
    assert whole.eval_count == 3 and whole.prompt_eval_count == 2


def test_ollama_model_management_endpoints(sim):
    api = ollama.Client(host=sim.url)
    assert [m.model for m in api.list().models] == ["sim-model:latest"]
    assert [m.model for m in api.ps().models] == ["sim-model:latest"]
    progress = list(api.pull("llama3.2:1b", stream=True))
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    assert any(p.total and p.completed == p.total for p in progress)
    assert "llama3.2:1b" in [m.model for m in api.list().models]   # pulled models are served
    assert api.generate(model="llama3.2:1b", prompt="x", options={"num_predict": 2}).eval_count == 2


def test_ollama_unknown_model_is_an_error_naming_the_fix(sim):
    with pytest.raises(ollama.ResponseError) as caught:
        ollama.Client(host=sim.url).generate(model="nope", prompt="x")
    assert caught.value.status_code == 404 and "pull" in caught.value.error
