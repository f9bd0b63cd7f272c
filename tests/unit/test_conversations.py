"""Multi-turn conversations: datasets (ShareGPT turns, JSONL turns, synthetic), the
workload.conversation keys and their errors, think times, answer reading, request building,
and the per-turn / per-conversation metrics."""
import json

import numpy as np
import pytest

from hpcbench.common import limits
from hpcbench.common.errors import HpcbenchError
from hpcbench.common.measure.conversations import ConversationRows
from hpcbench.executor.config import (
    ConversationSpec,
    DatasetSpec,
    LengthSpec,
    LoadConfig,
    ThinkTimeSpec,
)
from hpcbench.executor.conversations import Talk, think_rng, think_times_ns
from hpcbench.executor.datasets import Prompt, load_conversations
from hpcbench.executor.protocol_registry import get_protocol
from hpcbench.executor.wire import RequestInput, transcript
from hpcbench.proto import samples
from hpcbench.proto.samples import ErrorClass, Phase, SampleBatch, SampleBatchError
from hpcbench.recipes import validate

CONVERSATION = ConversationSpec()


def sharegpt_file(tmp_path, entries):
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps([{"conversations": turns} for turns in entries]))
    return DatasetSpec(kind="sharegpt", path=str(path), output_tokens=None)


# --- datasets -------------------------------------------------------------------------------

def test_sharegpt_human_turns_become_the_conversation_and_replies_set_lengths(tmp_path):
    spec = sharegpt_file(tmp_path, [[
        {"from": "system", "value": "be brief"},
        {"from": "human", "value": "first question"},
        {"from": "gpt", "value": "x" * 40},
        {"from": "human", "value": "second question"},
        {"from": "gpt", "value": "y" * 80},
        {"from": "human", "value": "third, unanswered"},
    ]])
    [script] = load_conversations(spec, CONVERSATION)
    assert [turn.text for turn in script] == ["first question", "second question",
                                              "third, unanswered"]
    # the replies' lengths (about 4 characters per token) are what each turn asks for
    assert [turn.output_tokens for turn in script] == [10, 20, None]


def test_sharegpt_conversation_ends_where_speakers_stop_alternating(tmp_path):
    spec = sharegpt_file(tmp_path, [
        [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"},
         {"from": "gpt", "value": "again"}, {"from": "human", "value": "lost"}],
        [{"from": "gpt", "value": "starts with the model"}],
    ])
    conversations = load_conversations(spec, CONVERSATION)
    assert [[turn.text for turn in script] for script in conversations] == [["a"]]


def test_sharegpt_without_any_usable_conversation_is_e006(tmp_path):
    spec = sharegpt_file(tmp_path, [[{"from": "gpt", "value": "no human"}]])
    with pytest.raises(HpcbenchError, match="no usable conversation"):
        load_conversations(spec, CONVERSATION)


def test_jsonl_turns_as_strings_or_objects(tmp_path):
    path = tmp_path / "talks.jsonl"
    path.write_text('{"turns": ["hello", {"prompt": "and then?", "output_tokens": 12}]}\n\n'
                    '{"turns": [{"text": "alone"}]}\n')
    spec = DatasetSpec(kind="jsonl", path=str(path), output_tokens=None)
    conversations = sorted(load_conversations(spec, CONVERSATION), key=len)
    assert conversations == [(Prompt("alone", 1, None),),
                             (Prompt("hello", 1, None), Prompt("and then?", 2, 12))]


@pytest.mark.parametrize("line", ['{"turns": []}', '{"turns": ["ok", 5]}', '{"prompt": "x"}',
                                  '{"turns": [{"prompt": "x", "output_tokens": 0}]}', "[1]",
                                  "not json"])
def test_a_malformed_jsonl_conversation_names_its_line(tmp_path, line):
    path = tmp_path / "talks.jsonl"
    path.write_text('{"turns": ["fine"]}\n' + line + "\n")
    spec = DatasetSpec(kind="jsonl", path=str(path))
    with pytest.raises(HpcbenchError, match="line 2: expected {\"turns\""):
        load_conversations(spec, CONVERSATION)


def test_synthetic_turn_counts_follow_the_distribution_and_max_turns_caps_them():
    spec = DatasetSpec(input_tokens=LengthSpec(mean=6), output_tokens=LengthSpec(mean=3))
    uniform = ConversationSpec(turns=LengthSpec("uniform", mean=4, min=2, max=6))
    counts = [len(script) for script in load_conversations(spec, uniform)]
    assert min(counts) == 2 and max(counts) == 6 and abs(np.mean(counts) - 4) < 0.3
    capped = ConversationSpec(turns=LengthSpec("uniform", mean=4, min=2, max=6), max_turns=3)
    assert max(len(script) for script in load_conversations(spec, capped)) == 3
    first = load_conversations(spec, uniform)[0][0]
    assert len(first.text.split()) == 6 and first.output_tokens == 3


def test_recipe_output_tokens_replace_the_files_lengths(tmp_path):
    spec = sharegpt_file(tmp_path, [[{"from": "human", "value": "q"},
                                     {"from": "gpt", "value": "x" * 400}]])
    spec = DatasetSpec(kind="sharegpt", path=spec.path, output_tokens=LengthSpec(mean=5))
    [script] = load_conversations(spec, CONVERSATION)
    assert script[0].output_tokens == 5


# --- think times and conversation state -----------------------------------------------------

def test_think_time_distributions():
    rng = think_rng(1, 0)
    assert think_times_ns(ThinkTimeSpec("fixed", 0.5, 0.5, 0.5), 3, rng) == [500_000_000] * 3
    uniform = np.array(think_times_ns(ThinkTimeSpec("uniform", 0, 1.0, 2.0), 2000, rng))
    assert uniform.min() >= 1e9 and uniform.max() <= 2e9 and abs(uniform.mean() - 1.5e9) < 5e7
    exponential = np.array(think_times_ns(ThinkTimeSpec("exponential", 2.0), 4000, rng))
    assert abs(exponential.mean() - 2e9) < 2e8 and exponential.min() >= 0


def test_a_talk_keeps_each_question_with_the_answer_received():
    talk = Talk(7, (Prompt("q1", 1, 4), Prompt("q2", 1, 4)), -1, [0])
    assert talk.answered("answer one") is True
    assert talk.history == [("q1", "answer one")] and talk.turn == 1
    assert talk.answered("answer two") is False


# --- requests and answers ---------------------------------------------------------------------

def test_chat_apis_send_the_history_as_messages_and_completions_as_a_transcript():
    history = (("hi", "hello there"), ("how are you?", "fine"))
    ask = RequestInput(model="m", prompt=transcript(history, "bye"), max_tokens=4, stream=True,
                       ignore_eos=False, history=history, message="bye")
    expected = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"},
                {"role": "user", "content": "how are you?"},
                {"role": "assistant", "content": "fine"}, {"role": "user", "content": "bye"}]
    for api in ("openai-chat", "ollama-chat"):
        assert get_protocol(api).request(ask).body["messages"] == expected
    for api in ("openai-completions", "ollama-generate"):
        assert get_protocol(api).request(ask).body["prompt"] == (
            "User: hi\n\nAssistant: hello there\n\nUser: how are you?\n\nAssistant: fine"
            "\n\nUser: bye\n\nAssistant:")
    # a first turn is the user's message alone, exactly as a single request
    assert transcript((), "hi") == "hi"


OPENAI_STREAM = (b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
                 b'data: {"choices":[{"delta":{"reasoning_content":"hmm"}}]}\n\n'
                 b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
                 b'data: {"choices":[{"delta":{"content":"lo \\u00e9"},'
                 b'"finish_reason":"stop"}]}\n\n'
                 b'data: {"choices":[],"usage":{"completion_tokens":2}}\n\ndata: [DONE]\n\n')


@pytest.mark.parametrize("api, answer, streamed, text", [
    ("openai-chat", OPENAI_STREAM, True, "Hello \u00e9"),
    ("openai-chat", b'{"choices":[{"message":{"content":"whole"}}]}', False, "whole"),
    ("openai-completions", b'data: {"choices":[{"text":"a"}]}\n\ndata: {"choices":'
                           b'[{"text":"b"}]}\n\n', True, "ab"),
    ("ollama-chat", b'{"message":{"content":"x"},"done":false}\n'
                    b'{"message":{"content":"y"},"done":true}\n', True, "xy"),
    ("ollama-generate", b'{"response":"whole","done":true}', False, "whole"),
    ("openai-chat", b"data: {not json\n\n", True, None),
])
def test_answer_text_is_read_back_from_the_bytes_received(api, answer, streamed, text):
    assert get_protocol(api).answer_text(answer, streamed) == text


# --- recipe keys ------------------------------------------------------------------------------

def workload(**overrides):
    return {"api": "openai-chat", "model": "m", "duration": 5, "concurrency": 2,
            "conversation": {"turns": 3, "think_time": "1s"}, **overrides}


def test_conversation_keys_resolve():
    config = LoadConfig.from_workload(workload(conversation={
        "turns": {"distribution": "uniform", "min": 2, "max": 5}, "max_turns": 4,
        "think_time": {"distribution": "exponential", "mean": "500ms"}}), "http://h:1")
    assert config.conversation == ConversationSpec(
        turns=LengthSpec("uniform", 3, 2, 5), max_turns=4,
        think_time=ThinkTimeSpec("exponential", 0.5, 0.0, 0.0))
    assert LoadConfig.from_workload(workload(conversation={}), "http://h:1").conversation == \
        ConversationSpec()
    assert LoadConfig.from_workload(workload(conversation=None), "http://h:1").conversation \
        is None


@pytest.mark.parametrize("overrides, message", [
    ({"dataset": {"kind": "bundled"}}, "workload.dataset.kind='bundled': expected synthetic"),
    ({"dataset": {"kind": "jsonl", "path": "x.jsonl"}},
     "workload.conversation.turns=3: expected no turns with a jsonl file"),
    ({"api": "resp"}, "workload.api='resp': expected openai-chat"),
    ({"api": "openai-completions", "batch": 4}, "workload.batch=4: expected 1"),
    ({"conversation": {"think_time": {"distribution": "uniform", "min": "3s"}}},
     "workload.conversation.think_time.max=None: expected a duration"),
    ({"conversation": {"think_time": {"distribution": "uniform", "min": "3s", "max": "1s"}}},
     "think_time.max='1s': expected a duration >= min"),
    ({"conversation": {"think_time": "soon"}}, "workload.conversation.think_time"),
    ({"conversation": {"turns": 0}}, "workload.conversation.turns.mean=0"),
    ({"conversation": {"max_turns": limits.MAX_TURNS + 1}}, "max_turns=1001"),
    ({"conversation": "yes"}, "workload.conversation must be a mapping"),
])
def test_bad_conversation_workloads_name_the_field_and_value(overrides, message):
    url = "redis://h:1" if overrides.get("api") == "resp" else "http://h:1"
    with pytest.raises(HpcbenchError, match=message.replace("(", r"\(").replace("[", r"\[")):
        LoadConfig.from_workload(workload(**overrides), url)


def recipe(**conversation_and_workload):
    return {"scenario": "s", "workload": {"service": "simulator", "model": "m",
                                          **conversation_and_workload}}


@pytest.mark.parametrize("workload_keys, path", [
    ({"conversation": {"turns": 2}, "dataset": {"kind": "sharegpt", "path": "a.json"}},
     "workload.conversation.turns"),
    ({"conversation": {}, "dataset": {"kind": "bundled"}}, "workload.dataset.kind"),
    ({"conversation": {"turns": {"distribution": "uniform", "min": 4}}},
     "workload.conversation.turns.max"),
    ({"conversation": {"turns": {"distribution": "uniform", "min": 4, "max": 2}}},
     "workload.conversation.turns.max"),
    ({"conversation": {"turns": 1001}}, "workload.conversation.turns"),
    ({"conversation": {"think_time": {"distribution": "gauss"}}},
     "workload.conversation.think_time.distribution"),
    ({"conversation": {"think_time": {"mean": "2 days"}}}, "workload.conversation.think_time.mean"),
    ({"conversation": {"think_time": "soon"}}, "workload.conversation.think_time"),
    ({"conversation": {"think_time": {"distribution": "exponential"}}},
     "workload.conversation.think_time.mean"),
    ({"conversation": {"rounds": 3}}, "workload.conversation.rounds"),
    ({"conversation": {}, "api": "openai-completions", "batch": [1, 8]}, "workload.batch"),
])
def test_recipe_validation_reports_conversation_problems(workload_keys, path):
    problems = validate(recipe(**workload_keys))
    assert path in [problem.path for problem in problems], [str(p) for p in problems]


def test_a_complete_conversation_recipe_validates():
    assert validate(recipe(conversation={
        "turns": {"distribution": "normal", "mean": 4, "stddev": 1, "min": 1, "max": 8},
        "max_turns": 6, "think_time": {"distribution": "uniform", "min": "1s", "max": "3s"}},
        load={"pattern": "poisson", "rate": 2})) == []


# --- sample contract and metrics --------------------------------------------------------------

def rows_batch(executor, table):
    """A batch from rows (conversation, turn, turns, phase, error, intended, end, tokens_in)."""
    n = len(table)
    cols = samples.empty_columns(n)
    for index, (conversation, turn, turns, phase, error, intended, end, tokens_in) in \
            enumerate(table):
        cols["conversation"][index], cols["turn"][index], cols["turns"][index] = \
            conversation, turn, turns
        cols["phase"][index], cols["error"][index] = phase, error
        cols["intended_ns"][index] = cols["send_ns"][index] = intended
        ok = error == ErrorClass.OK
        cols["first_ns"][index] = intended + 10_000_000 if ok else 0
        cols["chunks"][index] = cols["tokens_out"][index] = 1 if ok else 0
        cols["end_ns"][index] = end
        cols["tokens_in"][index] = tokens_in
        cols["slot"][index] = -1
    return SampleBatch(run="r", trial="t", executor=executor, node="n", seq=0, interval=0,
                       epoch_ns=0, columns=cols, itl_ns=np.zeros(0, np.int64))


M, W, OK, FAIL = Phase.MEASURED, Phase.WARMUP, ErrorClass.OK, ErrorClass.TIMEOUT
MS = 1_000_000


def test_per_turn_and_per_conversation_metrics():
    tally = ConversationRows()
    # executor a: conversation 0 completes (3 turns, 0 .. 900 ms), 1 fails at turn 2, 2 is cut
    # after turn 1 of 3; one started in warmup counts in turns, not in conversations
    tally.add(rows_batch("a", [(0, 0, 3, M, OK, 0, 100 * MS, 10),
                               (1, 0, 2, M, OK, 50 * MS, 150 * MS, 10),
                               (0, 1, 3, M, OK, 400 * MS, 500 * MS, 30),
                               (9, 1, 2, M, OK, 420 * MS, 470 * MS, 30)]))
    tally.add(rows_batch("a", [(1, 1, 2, M, FAIL, 450 * MS, 650 * MS, 30),
                               (0, 2, 3, M, OK, 800 * MS, 900 * MS, 50),
                               (2, 0, 3, M, OK, 810 * MS, 850 * MS, 10),
                               (9, 0, 2, W, OK, 0, 40 * MS, 10)]))
    # executor b numbers its conversations too: its 0 is another conversation (completed)
    tally.add(rows_batch("b", [(0, 0, 1, M, OK, 0, 200 * MS, 10)]))
    metrics = tally.metrics()
    assert (metrics["started"], metrics["completed"], metrics["failed"], metrics["cut"]) == \
        (4, 2, 1, 1)
    assert metrics["duration"]["count"] == 2
    assert sorted([metrics["duration"]["min"], metrics["duration"]["max"]]) == [200.0, 900.0]
    assert metrics["turns_planned_mean"] == pytest.approx((3 + 2 + 3 + 1) / 4)
    assert metrics["turns_completed_mean"] == pytest.approx((3 + 1 + 1 + 1) / 4)
    by_turn = {entry["turn"]: entry for entry in metrics["turns"]}
    assert sorted(by_turn) == [1, 2, 3]
    assert (by_turn[1]["requests"], by_turn[1]["ok"]) == (4, 4)      # the warmup row is out
    assert (by_turn[2]["requests"], by_turn[2]["errors"]) == (3, 1)
    assert by_turn[2]["input_tokens_mean"] == 30 and by_turn[3]["input_tokens_mean"] == 50
    assert by_turn[1]["ttft"]["p50"] == pytest.approx(10.0)
    assert by_turn[3]["e2e"]["max"] == pytest.approx(100.0)


def test_single_request_trials_have_no_conversation_metrics():
    tally = ConversationRows()
    batch = rows_batch("a", [(0, 0, 1, M, OK, 0, 1, 1)])
    batch.columns["conversation"][:] = -1
    batch.columns["turn"][:] = -1
    batch.columns["turns"][:] = 0
    tally.add(batch)
    assert tally.metrics() is None


@pytest.mark.parametrize("conversation, turn, turns", [
    (-1, 0, 0), (0, -1, 3), (0, 3, 3), (0, 0, limits.MAX_TURNS + 1), (3, 0, 0)])
def test_the_contract_refuses_conversation_columns_out_of_bounds(conversation, turn, turns):
    batch = rows_batch("a", [(0, 0, 1, M, OK, 0, 1, 1)])
    batch.columns["conversation"][:] = conversation
    batch.columns["turn"][:] = turn
    batch.columns["turns"][:] = turns
    with pytest.raises(SampleBatchError, match="conversation/turn/turns"):
        samples.decode(samples.encode(batch))


def test_the_contract_and_the_limits_agree_on_max_turns():
    assert samples.MAX_TURNS == limits.MAX_TURNS
