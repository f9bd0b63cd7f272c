"""The timing model: when each token of each request is produced.

One `Generation` per prompt; a `Submission` groups the generations of one HTTP request (an
OpenAI completions request may carry a list of prompts: one generation, one choice, per prompt,
queued and batched independently as vLLM does). Each token is due one step after the
previous token was actually written (a late token delays the rest, as a slow GPU step would,
instead of being followed by a catch-up burst):
- "model" mode: at most `max_num_seqs` generations run; the rest wait in FIFO order. An admitted
  generation's first token comes after `prefill_base_ms + prefill_ms_per_token * prompt_tokens`
  (with `prefix_caching`, only the prompt tokens the prefix cache did not hold count there:
  prefix_cache.py);
  each next token after one decode step of `decode_base_ms + decode_ms_per_seq * running`, so a
  bigger running batch decodes slower (as on a GPU server with continuous batching).
- "fixed" mode: first token exactly `ttft_ms` after arrival, then exactly `itl_ms` apart.
Times are `time.perf_counter()` seconds. All due tokens sit in one heap served by a single
alarm (`alarm.py`: a timerfd on Linux, microsecond-precise); tokens due together go out in one
pass, and a token is never written before its scheduled time.
The API layer supplies an `Output` that turns tokens into protocol bytes; the engine keeps the
statistics and the ground truth (server-side write time of every token).

Counting: `served`, `cancelled`, faults and truth records are per HTTP request (a load
generator counts requests, so the two tallies compare); TTFT/ITL/E2E histograms and
`finished` (vllm:request_success_total) are per prompt, as vLLM counts its engine requests.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import math
import random
import time
import zlib
from collections import deque
from typing import Callable, Protocol

from hpcbench.common.alarm import make_alarm
from hpcbench.servers.simulator.config import SimulatorConfig
from hpcbench.servers.simulator.metrics import ServerStats
from hpcbench.servers.simulator.prefix_cache import PrefixCache

VOCABULARY = tuple(f" {word}" for word in (
    "the", "cluster", "node", "token", "stream", "batch", "model", "latency", "server", "queue",
    "of", "and", "a", "to", "in", "is", "measure", "benchmark", "request", "answer", "fast",
    "slow", "GPU", "memory", "kernel", "decode", "prefill", "cache", "rate", "time", "data", "."))
# reasoning_fraction (config.py): the first tokens of an answer are its reasoning
VOCABULARY_JSON = tuple(json.dumps(word).encode() for word in VOCABULARY)


class Output(Protocol):
    """How a protocol (OpenAI SSE, Ollama NDJSON, non-streaming JSON) emits a generation."""

    def token(self, generation: "Generation", text: str, text_json: bytes) -> None: ...
    def finish(self, generation: "Generation", last: bool) -> None:
        """`generation` is complete; `last`: it is the request's last one (end the answer)."""
    def abort(self) -> None: ...


class Submission:
    """One HTTP generation request: its generations (one per prompt, in choice order) and the
    ground-truth record they add up to. `members` is cleared when the last one ends, so no
    reference cycle outlives the request."""

    __slots__ = ("info", "members", "open", "outcome", "prompt_tokens", "emitted",
                 "truth_perf", "truth_wall")

    def __init__(self, info: dict, members: list["Generation"]) -> None:
        self.info = info          # protocol facts for the truth record (api, ids)
        self.members = members
        self.open = len(members)  # members not yet ended
        self.outcome: str | None = None   # first outcome other than served, if any
        self.prompt_tokens = sum(member.prompt_tokens for member in members)
        self.emitted = 0          # tokens written over all members
        self.truth_perf: list[int] | None = None
        self.truth_wall: list[int] | None = None
        for member in members:
            member.submission = self


class Generation:
    """One prompt's generation: its length, its faults, its timeline."""

    __slots__ = ("output", "index", "submission", "prompt_tokens", "n_tokens", "finish_reason",
                 "offset", "emitted", "arrival", "admitted", "first", "last", "next_at",
                 "ticket", "stall", "disconnect_at", "no_token", "state", "text", "reasoning",
                 "prompt")

    def __init__(self, output: Output, prompt_tokens: int, max_tokens: int,
                 ignore_eos: bool, prompt_key: str, config: SimulatorConfig,
                 keep_text: bool = False, index: int = 0, thinks: bool = False) -> None:
        # everything random about a request follows from (seed, prompt): order does not matter
        digest = zlib.crc32(prompt_key.encode(), config.seed & 0xFFFFFFFF)
        self.output = output
        self.index = index        # the choice index of this prompt in its request
        self.submission: Submission | None = None
        self.prompt_tokens = prompt_tokens
        self.prompt = prompt_key   # what the prefix cache looks up
        self.n_tokens = max_tokens
        self.finish_reason = "length"
        if not ignore_eos and config.stop_probability > 0:
            # geometric length: each token ends the text with stop_probability
            p = config.stop_probability
            draw = random.Random(digest).random()
            early = 1 if p >= 1 else math.ceil(math.log(1 - draw) / math.log(1 - p))
            if early < max_tokens:
                self.n_tokens, self.finish_reason = max(early, 1), "stop"
        # how many of the first tokens are reasoning content (chat APIs only; see `thinks`)
        self.reasoning = int(self.n_tokens * config.reasoning_fraction) if thinks else 0
        self.offset = digest % len(VOCABULARY)
        self.emitted = 0
        self.arrival = self.admitted = self.first = self.last = self.next_at = 0.0
        self.ticket = 0           # heap entry that is current; older entries are stale
        self.stall = False
        self.disconnect_at = 0
        self.no_token = False
        self.state = "new"        # new, waiting, running; then the outcome: served,
                                  # disconnect, no_token or cancelled
        self.text: list[str] | None = [] if keep_text else None


class Engine:
    """Admits, schedules and finishes generations on one event loop."""

    def __init__(self, config: SimulatorConfig, stats: ServerStats,
                 record: Callable[[dict], None] | None,
                 publish: Callable[[], None] | None = None) -> None:
        self.config = config
        self.stats = stats
        self.record = record
        # copies the stats where other worker processes see them (shared_stats.py), if any
        self.publish = publish or (lambda: None)
        self.loop = asyncio.get_running_loop()
        self.waiting: deque[Generation] = deque()
        self.fault_rng = random.Random(config.seed)
        self.pause_armed = config.pause_ms <= 0
        self.due: list[tuple[float, int, Generation]] = []   # (when, ticket, generation)
        self.tickets = itertools.count(1)
        self.alarm = make_alarm(self.loop, self._wake)
        self.alarm_at = math.inf
        self.prefix_cache = (PrefixCache(config.prefix_cache_tokens, config.prefix_block_tokens)
                             if config.prefix_caching else None)

    # --- faults -------------------------------------------------------------------------
    def draw_fault(self) -> str | None:
        """The exclusive fault for the next request: 'error', 'disconnect', 'no_token' or None."""
        c = self.config
        if not (c.error_rate or c.disconnect_rate or c.no_token_rate):
            return None
        u = self.fault_rng.random()
        for kind, rate in (("error", c.error_rate), ("disconnect", c.disconnect_rate),
                           ("no_token", c.no_token_rate)):
            if u < rate:
                return kind
            u -= rate
        return None

    def count_fault(self, kind: str, info: dict | None = None) -> None:
        self.stats.faults[kind] += 1
        self.publish()
        if kind == "error" and self.record is not None and info is not None:
            self.record({**info, "outcome": "error", "status": self.config.error_status})

    # --- lifecycle ----------------------------------------------------------------------
    def submit(self, info: dict, generations: list[Generation],
               fault: str | None) -> Submission:
        """Queue one request's generations; a disconnect fault cuts the stream during choice
        0, a no_token fault makes every choice end without a token."""
        c = self.config
        received = info.pop("received_perf_ns", 0)
        submission = Submission(info, generations)
        now = time.perf_counter()
        if not self.pause_armed:
            # a whole-server stall, `pause_at_s` after the first generation request: the event
            # loop itself is blocked, as in a long GC pause or a hung GPU step
            self.pause_armed = True
            self.loop.call_later(c.pause_at_s, time.sleep, c.pause_ms / 1000)
        if self.record is not None:
            submission.truth_perf, submission.truth_wall = [], []
            # arrival: when the request's bytes reached this host (see transport.py), else now
            now_ns = time.perf_counter_ns()
            info["arrival_perf_ns"] = received or now_ns
            info["arrival_time_ns"] = time.time_ns() - (now_ns - info["arrival_perf_ns"])
        if fault == "disconnect":
            generations[0].disconnect_at = min(c.disconnect_at_token, generations[0].n_tokens)
        # the timing model counts from the same arrival as the truth: a request that waited
        # in the socket buffer, or was being parsed, is that much nearer its first token
        arrival = received / 1e9 if received else now
        for generation in generations:
            generation.arrival = arrival
            generation.no_token = fault == "no_token"
            if c.stall_ms > 0 and (c.stall_rate >= 1 or self.fault_rng.random() < c.stall_rate):
                generation.stall = True
            if c.mode == "fixed" or self.stats.running < c.max_num_seqs:
                self._admit(generation)
            else:
                generation.state = "waiting"
                self.waiting.append(generation)
                self.stats.waiting += 1
        self.publish()
        return submission

    def cancel(self, submission: Submission) -> None:
        """The client went away: stop generating and free the batch slots."""
        if submission.open and submission.outcome is None:
            submission.outcome = "cancelled"
            self.stats.cancelled += 1
        self._drop_members(submission)

    def _drop_members(self, submission: Submission) -> None:
        """End every member still waiting or running (its request is over) as cancelled."""
        for generation in list(submission.members):
            if generation.state == "waiting":
                self.waiting.remove(generation)
                self.stats.waiting -= 1
            elif generation.state != "running":
                continue
            generation.ticket = 0   # its heap entry, if any, is now stale
            self._end(generation, "cancelled")

    def _admit(self, generation: Generation) -> None:
        c = self.config
        stats = self.stats
        stats.running += 1
        stats.kv_tokens += generation.prompt_tokens
        generation.state = "running"
        generation.admitted = now = time.perf_counter()
        if c.mode == "fixed":
            self._schedule(generation, generation.arrival + c.ttft_ms / 1000)
        else:
            computed = generation.prompt_tokens
            if self.prefix_cache is not None:
                cached = self.prefix_cache.admit(generation.prompt.split())
                stats.prefix_cache_queries += generation.prompt_tokens
                stats.prefix_cache_hits += cached
                computed -= cached
            prefill = c.prefill_base_ms + c.prefill_ms_per_token * computed
            self._schedule(generation, now + prefill / 1000)

    def _schedule(self, generation: Generation, when: float) -> None:
        if generation.stall and generation.emitted + 1 == self.config.stall_at_token:
            when += self.config.stall_ms / 1000
        generation.next_at = when
        generation.ticket = ticket = next(self.tickets)
        heapq.heappush(self.due, (when, ticket, generation))
        if when < self.alarm_at:
            self.alarm_at = when
            self.alarm.set(when)

    def _wake(self) -> None:
        """Write every token that is due now; set the alarm for the next one."""
        self.alarm_at = math.inf
        due = self.due
        now = time.perf_counter()
        while due and due[0][0] <= now:
            _, ticket, generation = heapq.heappop(due)
            if ticket == generation.ticket:
                self._step(generation)
        if due and due[0][0] < self.alarm_at:
            self.alarm_at = due[0][0]
            self.alarm.set(self.alarm_at)
        self.publish()

    def close(self) -> None:
        self.alarm.close()

    def _step(self, generation: Generation) -> None:
        # this write's own time, one stamp for both the ground truth and the next step's
        # schedule: with two stamps, a delay between them made a truth gap shorter than the step
        now_ns = time.perf_counter_ns()
        now = now_ns / 1e9
        generation.ticket = 0
        stats = self.stats
        if generation.emitted == 0:
            stats.prompt_tokens += generation.prompt_tokens
        submission = generation.submission
        if generation.no_token:
            last = submission.open == 1
            if last:
                stats.faults["no_token"] += 1
                self.publish()
            generation.output.finish(generation, last)
            self._end(generation, "no_token")
            return
        index = (generation.offset + generation.emitted) % len(VOCABULARY)
        if submission.truth_perf is not None:
            submission.truth_perf.append(now_ns)
            submission.truth_wall.append(time.time_ns())
        generation.output.token(generation, VOCABULARY[index], VOCABULARY_JSON[index])
        if generation.emitted == 0:
            generation.first = now
            stats.ttft.observe(now - generation.arrival)
        else:
            stats.itl.observe(now - generation.last)
        generation.last = now
        generation.emitted += 1
        submission.emitted += 1
        stats.generation_tokens += 1
        stats.kv_tokens += 1
        if generation.emitted == generation.disconnect_at:
            stats.faults["disconnect"] += 1
            self.publish()
            generation.output.abort()
            self._end(generation, "disconnect")
        elif generation.emitted >= generation.n_tokens:
            stats.e2e.observe(now - generation.arrival)
            stats.queue.observe(max(generation.admitted - generation.arrival, 0.0))
            stats.prefill.observe(generation.first - generation.admitted)
            stats.decode.observe(now - generation.first)
            if generation.emitted > 1:
                stats.tpot.observe((now - generation.first) / (generation.emitted - 1))
            stats.finished[generation.finish_reason] += 1
            last = submission.open == 1
            if last and submission.outcome is None:
                stats.served += 1
            self.publish()   # counted before the client can see its last byte
            generation.output.finish(generation, last)
            self._end(generation, "served")
        else:
            c = self.config
            if c.mode == "fixed":
                step = c.itl_ms / 1000
            else:
                step = (c.decode_base_ms + c.decode_ms_per_seq * stats.running) / 1000
            self._schedule(generation, now + step)

    def _end(self, generation: Generation, outcome: str) -> None:
        if generation.state == "running":
            self.stats.running -= 1
            self.stats.kv_tokens -= generation.prompt_tokens + generation.emitted
            if self.waiting:
                self.stats.waiting -= 1
                self._admit(self.waiting.popleft())
        generation.state = outcome
        generation.output = None   # the answer is written or abandoned: let it go
        submission = generation.submission
        submission.open -= 1
        if outcome != "served" and submission.outcome is None:
            submission.outcome = outcome
        if submission.open == 0:
            self._record(submission)
            submission.members = []
        elif outcome == "disconnect":
            self._drop_members(submission)   # the connection is gone: so are the other prompts

    def _record(self, submission: Submission) -> None:
        """The request's ground-truth record: totals over its prompts, every token write."""
        if self.record is None:
            return
        members = submission.members
        outcome = submission.outcome or "served"
        self.record({**submission.info, "outcome": outcome, "prompts": len(members),
                     "prompt_tokens": submission.prompt_tokens,
                     "completion_tokens": submission.emitted,
                     "reasoning_tokens": sum(min(m.reasoning, m.emitted) for m in members),
                     "finish_reason": members[0].finish_reason if outcome == "served" else None,
                     "finish_reasons": [m.finish_reason if m.state == "served" else None
                                        for m in members],
                     "token_perf_ns": submission.truth_perf,
                     "token_time_ns": submission.truth_wall})
