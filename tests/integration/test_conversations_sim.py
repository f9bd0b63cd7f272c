"""Multi-turn conversations through the real executor engine over real sockets: the history a
turn sends (a scripted server records every body), the simulator's view of each turn
(ground truth: arrival and prompt tokens), think times, open and closed loop, failures."""
from __future__ import annotations

import json
import subprocess
from collections import defaultdict

import numpy as np
import pytest

from hpcbench.executor.engine import client_request_id
from hpcbench.executor.summary import summarize
from hpcbench.proto.samples import ErrorClass, Phase
from hpcbench.servers.simulator import start_simulator
from tests.support.executor_runs import rows, run_load
from tests.support.scripted_http import ScriptedServer

THINK_NS = 80_000_000


def streamed_answer(api: str, *pieces: str) -> bytes:
    """An OpenAI chat or completions stream of `pieces`, chunked, as a server sends it."""
    events = [b"data: " + json.dumps({"choices": [
        {"index": 0, "finish_reason": None,
         **({"delta": {"content": text}} if api == "openai-chat" else {"text": text})}]}
    ).encode() + b"\n\n" for text in pieces]
    events.append(b"data: [DONE]\n\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in events)
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")


def talks_file(tmp_path, *conversations) -> str:
    path = tmp_path / "talks.jsonl"
    path.write_text("".join(json.dumps({"turns": list(turns)}) + "\n" for turns in conversations))
    return str(path)


@pytest.mark.parametrize("api", ["openai-chat", "openai-completions"])
def test_each_turn_sends_the_history_with_the_answers_as_received(tmp_path, api):
    """The second and third turns carry the earlier questions and the answers exactly as the
    server streamed them (escapes, non-ASCII and all), not the dataset's."""
    answers = [("Bonjour", ", \u00e7a va", " \"bien\""), ("Line\n", "two")]
    server = ScriptedServer([streamed_answer(api, *answers[0]),
                             streamed_answer(api, *answers[1]), streamed_answer(api, "end")])
    try:
        stats, batches = run_load(
            server.url, api=api, max_requests=3, stream=True,
            dataset={"kind": "jsonl", "path": talks_file(tmp_path, ["q one", "q two", "q three"]),
                     "output_tokens": 4},
            conversation={"think_time": "10ms"})
    finally:
        server.close()
    assert stats.errors == {} and stats.measured == 3
    first, second = "".join(answers[0]), "".join(answers[1])
    if api == "openai-chat":
        assert [body["messages"] for body in server.bodies] == [
            [{"role": "user", "content": "q one"}],
            [{"role": "user", "content": "q one"}, {"role": "assistant", "content": first},
             {"role": "user", "content": "q two"}],
            [{"role": "user", "content": "q one"}, {"role": "assistant", "content": first},
             {"role": "user", "content": "q two"}, {"role": "assistant", "content": second},
             {"role": "user", "content": "q three"}]]
    else:
        assert [body["prompt"] for body in server.bodies] == [
            "q one",
            f"User: q one\n\nAssistant: {first}\n\nUser: q two\n\nAssistant:",
            f"User: q one\n\nAssistant: {first}\n\nUser: q two\n\nAssistant: {second}"
            "\n\nUser: q three\n\nAssistant:"]
    table = rows(batches)
    assert list(table["turn"]) == [0, 1, 2] and set(table["turns"]) == {3}
    assert set(table["conversation"]) == {0}


def by_conversation(table) -> dict[int, list[int]]:
    """Row indices of each conversation, in turn order."""
    talks = defaultdict(list)
    for row in np.argsort(table["turn"], kind="stable"):
        talks[int(table["conversation"][row])].append(int(row))
    return talks


@pytest.mark.parametrize("load", [{"pattern": "poisson", "rate": 25}, {"pattern": "closed"}])
def test_turns_follow_the_answer_and_think_time_and_carry_the_growing_history(load):
    """Against the simulator: turn k is intended exactly at turn k-1's end plus the think time,
    reaches the server after that answer ended, and its prompt (as the server counted it) is
    every earlier question and answer plus the new question."""
    with start_simulator(mode="fixed", ttft_ms=5, itl_ms=2, record_truth=True) as sim:
        stats, batches = run_load(
            sim.url, api="openai-chat", duration=1.5, max_requests=None, load=load,
            concurrency=3, dataset={"input_tokens": 7, "output_tokens": 5, "ignore_eos": True},
            conversation={"turns": {"distribution": "uniform", "min": 2, "max": 4},
                          "think_time": f"{THINK_NS // 1_000_000}ms"})
        truth = {record["client_request_id"]: record for record in sim.truth}
    assert stats.errors == {}
    table = rows(batches)
    talks = by_conversation(table)
    assert len(talks) >= 8
    complete = 0
    for turns in talks.values():
        assert [int(table["turn"][row]) for row in turns] == list(range(len(turns)))
        planned = int(table["turns"][turns[0]])
        assert 2 <= planned <= 4 and len(turns) <= planned
        complete += len(turns) == planned
        for before, after in zip(turns, turns[1:]):
            assert table["intended_ns"][after] == table["end_ns"][before] + THINK_NS
            assert table["send_ns"][after] >= table["intended_ns"][after]
        for turn, row in enumerate(turns):
            record = truth[client_request_id("executor-0", int(table["req_id"][row]))]
            # 7 words per question and 5 per answer, all sent again each turn
            assert record["prompt_tokens"] == 7 * (turn + 1) + 5 * turn
            if turn:
                previous = truth[client_request_id("executor-0",
                                                   int(table["req_id"][turns[turn - 1]]))]
                assert record["arrival_perf_ns"] > previous["token_perf_ns"][-1]
    assert complete >= 5
    if load["pattern"] == "closed":
        # a user slot holds one conversation at a time: its next starts after the last ended
        for slot in range(3):
            mine = sorted((int(table["intended_ns"][row]), int(table["end_ns"][row]),
                           int(table["conversation"][row]))
                          for row in np.flatnonzero(table["slot"] == slot))
            for (_, end, talk), (start, _, next_talk) in zip(mine, mine[1:]):
                if talk != next_talk:
                    assert start >= end
            assert len({talk for _, _, talk in mine}) >= 2
    summary = summarize(batches)["conversations"]
    assert summary["completed"] >= complete - sum(
        1 for turns in talks.values() if table["phase"][turns[0]] != Phase.MEASURED)
    assert [entry["turn"] for entry in summary["turns"]][:2] == [1, 2]
    assert summary["turns"][1]["input_tokens_mean"] == 7 * 2 + 5


def test_a_failed_turn_ends_its_conversation():
    with start_simulator(mode="fixed", ttft_ms=2, itl_ms=1, error_rate=0.3, seed=5) as sim:
        stats, batches = run_load(
            sim.url, api="openai-chat", duration=1.0, max_requests=None, concurrency=4,
            dataset={"input_tokens": 4, "output_tokens": 3, "ignore_eos": True},
            conversation={"turns": 4, "think_time": "5ms"})
    table = rows(batches)
    failed_talks = 0
    for turns in by_conversation(table).values():
        errors = [row for row in turns if table["error"][row] != ErrorClass.OK]
        if errors:
            failed_talks += 1
            assert errors == [turns[-1]]        # nothing was sent after the failed turn
    assert failed_talks >= 3
    summary = summarize(batches)["conversations"]
    assert summary["failed"] >= 1
    assert summary["started"] == summary["completed"] + summary["failed"] + summary["cut"]


def test_a_conversation_stays_on_one_target():
    """With several targets, requests take them in turn, but every turn of a conversation
    goes where its first went (the server holding its context, and its prefix cache)."""
    with start_simulator(mode="fixed", ttft_ms=2, itl_ms=1, record_truth=True) as first, \
            start_simulator(mode="fixed", ttft_ms=2, itl_ms=1, record_truth=True) as second:
        _, batches = run_load(
            [first.url, second.url], api="openai-chat", max_requests=24, concurrency=3,
            dataset={"input_tokens": 4, "output_tokens": 3, "ignore_eos": True},
            conversation={"turns": 3})
        served = [{record["client_request_id"] for record in sim.truth}
                  for sim in (first, second)]
    table = rows(batches)
    talks = by_conversation(table)
    assert len(talks) >= 4
    for turns in talks.values():
        ids = {client_request_id("executor-0", int(table["req_id"][row])) for row in turns}
        assert ids <= served[0] or ids <= served[1]
    assert served[0] and served[1]


def test_the_standalone_executor_holds_conversations_and_summarises_them(tmp_path, cli_env):
    out = tmp_path / "run.bin"
    with start_simulator(mode="fixed", ttft_ms=2, itl_ms=1) as sim:
        result = subprocess.run(
            ["hpcbench-executor", "--target", sim.url, "--model", "sim-model",
             "--concurrency", "2", "--duration", "0", "--max-requests", "12",
             "--output-tokens", "3", "--input-tokens", "5", "--ignore-eos", "--out", str(out),
             "--conversation", '{"turns": 3, "think_time": "5ms"}'],
            env=cli_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    talks = json.loads(result.stdout)["conversations"]
    # 12 turns of 3-turn conversations on 2 slots: 4 complete unless one slot ran ahead and
    # started a fifth, which the request count then cut (and one of the other slot's)
    assert talks["failed"] == 0 and talks["completed"] >= 3
    assert talks["started"] == talks["completed"] + talks["cut"]
    assert [turn["input_tokens_mean"] for turn in talks["turns"]] == [5, 13, 21]
    bad = subprocess.run(["hpcbench-executor", "--target", sim.url, "--model", "m",
                          "--conversation", '{"turns": 3, "think_time": "soon"}'],
                         env=cli_env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "error E006" in bad.stderr
    assert "workload.conversation.think_time" in bad.stderr
