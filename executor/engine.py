"""The trial engine: dispatch requests by schedule, measure them, stream sample batches.

`run_trial(config, sink, stop_event)` is the whole executor as seen by the coordinator's agent
and by the standalone CLI. Requests are prebuilt as bytes (one per prompt), sent through the
pooled HTTP client, and recorded when they end; every `batch_interval` (or `batch_max_rows`
finished requests) the recorder cuts a SampleBatch and hands it to the sink.

Open loop: intended times are t0 + schedule offsets; the dispatcher waits for each on a Linux
timerfd alarm (the simulator's `alarm` module: never early, microseconds late, no busy-waiting;
uvloop's own timers count whole milliseconds), so dispatch lag stays in the tens of
microseconds when a core is free; it is recorded per request either way. Closed loop: each slot
sends its next request as soon as its previous one ended (intended = send decision time), except
after a connection failure (refused, reset, unreachable): then the slot backs off, exponentially
with jitter, before its next attempt (`SlotBackoff`), so a dead server is not hammered while the
session notices that its process died. Each attempt is still recorded as one error.

Conversations (`workload.conversation`): the schedule (open loop) or a free slot (closed loop)
starts a conversation instead of sending a request; each later turn is sent from a loop timer
at the previous answer's end plus a think time, with the history so far (see "conversations"
below).
"""
from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from hpcbench.common.alarm import make_alarm
from hpcbench.common.errors import HpcbenchError, config_error
from hpcbench.common.stamped_socket import hold_kernel_stamps
from hpcbench.executor.attempt import Attempt, TurnAttempt
from hpcbench.executor.config import LoadConfig
from hpcbench.executor.conversations import Talk, think_rng, think_times_ns
from hpcbench.executor.datasets import estimate_tokens, load_conversations, load_dataset
from hpcbench.executor.http import (
    ConnectionPool,
    HttpConnection,
    check_headers,
    check_request_line,
    request_rest,
    request_start,
)
from hpcbench.executor.protocol_registry import get_protocol
from hpcbench.executor.recorder import SampleRecorder
from hpcbench.executor.schedules import arrival_offsets, closed_loop_starts
from hpcbench.executor.wire import FramedProtocol, HttpRequest, RequestInput, transcript
from hpcbench.proto.samples import MAX_GAPS, ErrorClass, Phase

START_LEAD_NS = 20_000_000  # t0 is this far after setup, so the first requests are not late
TIMER_SLACK_NS = 1_000_000  # uvloop timers count whole milliseconds and may fire that early
# closed loop: a slot whose request could not reach its server waits before the next attempt
BACKOFF_FIRST_S = 0.01      # after the first failure (nominal; jitter takes it to 1/2 .. 1 x)
BACKOFF_MAX_S = 1.0         # the nominal wait doubles up to this
CONNECT_FAILURES = frozenset({ErrorClass.CONNECTION_REFUSED, ErrorClass.CONNECTION_RESET,
                              ErrorClass.OTHER})      # OTHER: unreachable network, unknown host
now_ns = time.perf_counter_ns
# the members read on every request, as globals: Enum attribute access costs ~70 ns in 3.11
_WARMUP, _MEASURED, _DRAIN, _OK = Phase.WARMUP, Phase.MEASURED, Phase.DRAIN, ErrorClass.OK
_PROTOCOL = ErrorClass.PROTOCOL


@dataclass
class TrialStats:
    """What one executor did in one trial (the full detail is in the sample batches)."""

    requests: int = 0                 # every recorded request, warmup included
    measured: int = 0                 # requests scheduled in the measured window
    warmup: int = 0
    ok: int = 0                       # measured requests without error
    errors: dict[str, int] = field(default_factory=dict)   # measured, by ErrorClass name
    output_tokens: int = 0            # measured
    batches: int = 0
    measured_seconds: float = 0.0
    max_dispatch_lag_ms: float = 0.0
    stopped: bool = False             # ended by stop_event, in-flight requests cancelled
    kernel_stamps: bool = False       # read times are the kernel's receive stamps (else: reads)

    @property
    def request_rate(self) -> float:
        return self.measured / self.measured_seconds if self.measured_seconds else 0.0


class SlotBackoff:
    """Exponential backoff with jitter for the closed loop's slots after connection failures.

    After a slot's n-th consecutive failure it waits `failed(slot)` seconds: nominally
    BACKOFF_FIRST_S doubling with n up to BACKOFF_MAX_S, times a random factor in [1/2, 1)
    ("equal jitter": slots that failed together do not retry together, and a wait is never
    under half its nominal length, so the attempts per slot stay bounded). A slot's first request that is not
    a connection failure resets its count: the next failure waits BACKOFF_FIRST_S again.
    """

    def __init__(self, slots: int, seed: int = 0, first_s: float = BACKOFF_FIRST_S,
                 max_s: float = BACKOFF_MAX_S) -> None:
        self.first_s, self.max_s = first_s, max_s
        self.failures = [0] * slots
        self._random = random.Random(seed)

    def nominal_s(self, failures: int) -> float:
        """The wait before jitter after `failures` consecutive failures (>= 1)."""
        return min(self.first_s * 2.0 ** min(failures - 1, 64), self.max_s)

    def failed(self, slot: int) -> float:
        """Count a failure of `slot`; the seconds it waits before its next attempt."""
        self.failures[slot] += 1
        return self.nominal_s(self.failures[slot]) * (0.5 + 0.5 * self._random.random())

    def succeeded(self, slot: int) -> None:
        self.failures[slot] = 0


def client_request_id(executor_id: str, request_id: int) -> str:
    """The X-Request-Id of a request: UUID-shaped because some servers (llama-cpp-python's,
    via starlette-context) answer 400 to anything else; its first 64 bits hash the executor id,
    its last 64 bits are the request id, so truth records match samples exactly."""
    executor = hashlib.sha1(executor_id.encode()).hexdigest()[:16]
    return (f"{executor[:8]}-{executor[8:12]}-{executor[12:16]}-"
            f"{request_id >> 48 & 0xFFFF:04x}-{request_id & 0xFFFFFFFFFFFF:012x}")


async def run_trial(config: LoadConfig, sink, stop_event: asyncio.Event | None = None
                    ) -> TrialStats:
    """Run one trial to its end (duration, request count or `stop_event`) and return stats.

    Every finished request goes to `sink.send(batch)` before this returns; the caller closes
    the sink.
    """
    return await Trial(config, sink).run(stop_event or asyncio.Event())


class Trial:
    """One trial's load: dispatch, completion, batching. `progress()` may be read from another
    thread (the executor agent's heartbeat) while `run` goes on."""

    def __init__(self, config: LoadConfig, sink) -> None:
        self.config = config
        self.sink = sink
        self.protocol = get_protocol(config.api).configured(config.api_config)
        framed = isinstance(self.protocol, FramedProtocol)   # not HTTP: encodes its own requests
        connection = self.protocol.connection_class if framed else HttpConnection
        self.framed = framed
        self.line_index: dict[tuple[str, str], int] = {}    # (method, path) -> its number
        if config.conversation is None:
            self.prompts = load_dataset(config.dataset, config.executor_index)
            self._begin = self._issue          # a schedule slot or a free slot sends a request
        else:   # a conversation's first turn has no history: it is prebuilt like a prompt
            self.scripts = load_conversations(config.dataset, config.conversation,
                                              config.executor_index)
            self.prompts = [script[0] for script in self.scripts]
            self._begin = self._start_conversation       # ... or starts a conversation
        self._prebuild()
        # one (pool, request line + Host header of each distinct method and path) per target;
        # request k goes to target k mod n, every turn of conversation c to target c mod n
        self.routes = [(ConnectionPool(host, port, connection),
                        [request_start(method, host, port, base_path + path)
                         for method, path in self.lines])
                       for host, port, base_path in config.endpoints]
        self.request_id_header = b"X-Request-Id: " + client_request_id(
            config.executor_id, 0)[:19].encode()
        self.timeout_ns = int(config.request_timeout * 1e9)
        # in issue order, which is deadline order (see _expire); the values are unused
        self.in_flight: dict[Attempt, None] = {}
        self.expiry: asyncio.TimerHandle | None = None    # fires at the oldest one's deadline
        self.slots_running = 0            # closed loop: slots not yet ended
        self.slots_ended: asyncio.Future | None = None
        # jitter differs between executors (each its own stream), repeatable per executor
        self.backoff = SlotBackoff(config.concurrency,
                                   config.dataset.seed * 100_003 + config.executor_index)
        self.backing_off: dict[int, asyncio.TimerHandle] = {}   # slot -> its next attempt
        self.next_id = 0
        self.measured_sent = 0
        self.stats = TrialStats()
        self.errors: Counter = Counter()
        self.dispatching = True
        self.all_done = asyncio.Event()
        self.flush_now = asyncio.Event()
        # conversations: how many are held, the think-time timers of those between turns, and
        # a future the dispatcher awaits: done when starts have ended and no conversation is
        # held, or failed with a dispatch error raised in a timer callback
        self.next_conversation = 0
        self.talking = 0
        self.starts_over = False             # open loop: the schedule has started its last one
        self.thinking: dict[Talk, asyncio.TimerHandle] = {}
        self.talks_over: asyncio.Future | None = None
        self.think_rng = think_rng(config.dataset.seed, config.executor_index)

    def _prebuild(self) -> None:
        """One request per prompt (per `batch` consecutive prompts), built by the protocol
        before the trial. An HTTP request is kept without its request line and Host header
        (the target's, added when sent; `self.lines` lists the distinct (method, path) pairs,
        each request names its own by index) and split before the blank line, so each request
        gets its own X-Request-Id (see client_request_id): servers log it, the simulator's
        truth keeps it. A framed protocol's request is sent as it is."""
        config = self.config
        count = len(self.prompts)
        self.requests, self.tokens_in = [], []
        for first in range(count):
            group = [self.prompts[(first * config.batch + k) % count]
                     for k in range(config.batch)]
            lengths = [p.output_tokens for p in group if p.output_tokens is not None]
            tokens_in = sum(p.input_tokens for p in group)
            ask = RequestInput(model=config.model, prompt=group[0].text if config.batch == 1
                               else [p.text for p in group],
                               max_tokens=self._max_tokens(max(lengths) if lengths else None),
                               stream=config.stream, ignore_eos=config.dataset.ignore_eos,
                               index=first, message=group[0].text if config.conversation
                               else "", executor_index=config.executor_index,
                               input_tokens=tokens_in)
            self.requests.append(self._build(ask))
            self.tokens_in.append(tokens_in)
        self.lines = list(self.line_index)

    def _max_tokens(self, wanted: int | None) -> int | None:
        """The output length to ask for: the dataset's, capped by workload.max_tokens."""
        if self.config.max_tokens is not None:
            return min(wanted or self.config.max_tokens, self.config.max_tokens)
        return wanted

    def _build(self, ask: RequestInput) -> tuple[bytes, bytes | None, int]:
        """(head, body, request line number) of one request the protocol builds; a framed
        protocol's bytes come as (bytes, None, 0). E006 naming the protocol for a request that
        is not well-formed."""
        protocol = self.protocol
        try:
            built = protocol.request(ask)
        except HpcbenchError:
            raise
        except Exception as error:   # a third-party protocol's bug: say whose
            raise config_error(f"api {protocol.name!r} failed to build a request: "
                               f"{type(error).__name__}: {error}",
                               ["fix: repair the protocol plugin, or check "
                                "workload.api_config"]) from error
        if self.framed:
            if not isinstance(built, bytes) or not built:
                raise config_error(f"api {protocol.name!r} built {type(built).__name__} "
                                   "instead of the bytes of a request",
                                   ["fix: a FramedProtocol's request() returns bytes"])
            return built, None, 0
        return self._http_request(built, self.line_index)

    def _http_request(self, built, lines: dict) -> tuple[bytes, bytes, int]:
        """(headers, body, index of its request line) of one protocol's HttpRequest; E006
        naming the protocol for anything that would not be a well-formed request."""
        name = self.protocol.name
        if not isinstance(built, HttpRequest):
            raise config_error(f"api {name!r} built {type(built).__name__} instead of an "
                               "HttpRequest", ["fix: an HttpProtocol's request() returns "
                                               "hpcbench.executor.wire.HttpRequest"])
        check_request_line(name, built.method, built.path)
        check_headers(name, built.headers)
        extras = self.config.request_extras
        body = built.body
        if isinstance(body, dict):
            body = {**body, **extras}
        elif extras:
            raise config_error(f"the service's request_extras ({', '.join(extras)}) need a "
                               f"JSON object body, but api {name!r} sends "
                               f"{type(body).__name__}",
                               ["fix: use an api whose requests are JSON objects, or a service "
                                "plugin without request_extras"])
        if isinstance(body, (dict, list)):
            try:
                body = json.dumps(body, allow_nan=False).encode()
            except (TypeError, ValueError) as error:
                raise config_error(f"api {name!r} built a body that is not JSON: {error}",
                                   ["fix: repair the protocol plugin"]) from error
            content_type = "application/json"
        elif body is None:
            body, content_type = b"", "application/json"
        elif isinstance(body, bytes):
            content_type = "application/octet-stream"
        else:
            raise config_error(f"api {name!r} built a {type(body).__name__} body",
                               ["fix: an HttpRequest body is a dict or list (JSON), bytes "
                                "or None"])
        line = lines.setdefault((built.method, built.path), len(lines))
        head, body = request_rest(built.method, body, built.headers,
                                  content_type).split(b"\r\n\r\n", 1)
        return head, body, line

    def progress(self) -> tuple[int, int]:
        """(requests recorded so far, requests in flight): what a heartbeat tells the
        coordinator, so that a lost executor's unsent samples can be counted."""
        return self.stats.requests, len(self.in_flight)

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self, stop_event: asyncio.Event) -> TrialStats:
        # kept open for the trial, so the kernel's receive stamping stays switched on
        stamp_holder = hold_kernel_stamps()
        self.stats.kernel_stamps = stamp_holder is not None
        try:
            return await self._run(stop_event)
        finally:
            if stamp_holder is not None:
                stamp_holder.close()

    async def _run(self, stop_event: asyncio.Event) -> TrialStats:
        config = self.config
        loop = asyncio.get_running_loop()
        self.loop = loop
        if config.load.pattern == "closed":   # every slot starts on an open connection
            share = -(-config.concurrency // len(self.routes))       # slots per target
            await asyncio.gather(*(pool.prewarm(share, min(config.request_timeout, 5.0))
                                   for pool, _ in self.routes))
        self.t0 = now_ns() + START_LEAD_NS
        self.loop_offset = loop.time() - now_ns() / 1e9    # perf_counter -> loop clock
        self.warmup_end = self.t0 + int(config.warmup * 1e9)
        self.measure_end = (self.warmup_end + int(config.duration * 1e9)
                            if config.duration else None)
        self.recorder = SampleRecorder(config.run_id, config.trial_id, config.executor_id,
                                       config.node, time.time_ns() - now_ns())
        self.wake: asyncio.Future | None = None
        self.alarm = make_alarm(loop, self._alarm_fired)
        # the garbage collector's full passes walked every long-lived object (modules,
        # prompts, prebuilt requests) again and again: ~4% of the executor's CPU per trial.
        # Frozen objects are skipped; requests break their own cycles (Attempt._settle).
        gc.freeze()
        self.talks_over = loop.create_future()
        dispatcher = loop.create_task(self._closed_loop() if config.load.pattern == "closed"
                                      else self._open_loop())
        flusher = loop.create_task(self._flush_periodically())
        stopper = loop.create_task(stop_event.wait())
        drained = loop.create_task(self.all_done.wait())
        try:
            await asyncio.wait({dispatcher, stopper, flusher}, return_when=asyncio.FIRST_COMPLETED)
            if dispatcher.done():
                dispatcher.result()          # surfaces a dispatcher bug instead of hiding it
                self.dispatching = False
                if self.in_flight:           # let requests in flight end (each has a timeout)
                    await asyncio.wait({drained, stopper, flusher},
                                       return_when=asyncio.FIRST_COMPLETED)
            if flusher.done():
                flusher.result()             # a failing sink ends the trial with its error
            self.stats.stopped = stopper.done()
        finally:
            self.dispatching = False
            if self.expiry is not None:
                self.expiry.cancel()
            for timer in (*self.backing_off.values(), *self.thinking.values()):
                timer.cancel()
            for task in (dispatcher, flusher, stopper, drained):
                task.cancel()
            for attempt in list(self.in_flight):     # stop_event (or an error): cancel the rest
                attempt.cancel(now_ns())
            self.alarm.close()
            for pool, _ in self.routes:
                pool.close()
            self._flush()
            gc.unfreeze()
        end = now_ns() if self.measure_end is None else min(now_ns(), self.measure_end)
        self.stats.measured_seconds = max(end - self.warmup_end, 0) / 1e9
        self.stats.errors = {ErrorClass(code).name: count for code, count in self.errors.items()}
        self.stats.batches = self.recorder.seq
        return self.stats

    # --- dispatch ----------------------------------------------------------------------------
    def _phase(self, intended: int) -> int:
        if intended < self.warmup_end:
            return _WARMUP
        if self.measure_end is None or intended < self.measure_end:
            return _MEASURED
        return _DRAIN

    def _count_reached(self) -> bool:
        limit = self.config.max_requests
        return limit is not None and self.measured_sent >= limit

    def _issue(self, intended: int, slot: int) -> None:
        request_id = self.next_id
        self.next_id += 1
        phase = self._phase(intended)
        if phase == _MEASURED:
            self.measured_sent += 1
        index = request_id % len(self.requests)
        attempt = Attempt(request_id, intended, phase, slot, self.protocol, self.config.stream,
                          self.tokens_in[index], self._done)
        self._launch(attempt, self.requests[index], request_id)

    def _launch(self, attempt: Attempt, request: tuple[bytes, bytes | None, int],
                route: int) -> None:
        """Put `attempt` in flight (under its deadline) and send its request to target
        `route` mod the number of targets."""
        attempt.deadline_ns = attempt.intended_ns + self.timeout_ns
        self.in_flight[attempt] = None
        if self.expiry is None:              # no other request in flight: it is the oldest
            self.expiry = self._expiry_at(attempt.deadline_ns)
        head, body, line = request
        request_id = attempt.req_id
        pool, starts = self.routes[route % len(self.routes)]
        if body is None:
            pool.send(head, attempt)
        else:
            pool.send(b"%s%s\r\n%s%04x-%012x\r\n\r\n%s" % (
                starts[line], head, self.request_id_header, request_id >> 48 & 0xFFFF,
                request_id & 0xFFFFFFFFFFFF, body), attempt)

    async def _wait_until(self, intended: int) -> None:
        """Return at `intended` (perf_counter ns), not before; for the one open-loop dispatcher."""
        while now_ns() < intended:
            self.wake = self.loop.create_future()
            self.alarm.set(intended / 1e9)   # perf_counter is CLOCK_MONOTONIC, the alarm's clock
            await self.wake

    def _alarm_fired(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    async def _open_loop(self) -> None:
        """Send (or, with conversations, start) one at each scheduled time; conversations
        then go on by themselves (`_turn_done`): wait until none is held."""
        await self._open_loop_starts()
        if self.config.conversation is not None:
            self.starts_over = True
            self._conversation_ended(None)       # resolves talks_over if none is held
            await self.talks_over

    async def _open_loop_starts(self) -> None:
        config = self.config
        horizon = None if config.duration is None else config.warmup + config.duration
        for block in arrival_offsets(config.load, horizon, config.dataset.seed,
                                     config.executor_index, config.executor_count):
            for intended in (self.t0 + (block * 1e9).astype("int64")).tolist():
                if self._count_reached():
                    return
                await self._wait_until(intended)
                self._begin(intended, -1)

    async def _closed_loop(self) -> None:
        """Start every slot at its (ramp-up) time; each then sends its next request from the
        previous one's completion callback (`_next_in_slot`): no future, task wake-up or
        await per request. Returns when every slot has ended."""
        starts = closed_loop_starts(self.config.concurrency, self.config.load.ramp_up)
        self.slots_running = len(starts)
        self.slots_ended = self.loop.create_future()
        await asyncio.gather(*(self._start_slot(slot, self.t0 + int(offset * 1e9))
                               for slot, offset in enumerate(starts)))
        await self.slots_ended            # raises what a failing _issue raised

    async def _start_slot(self, slot: int, start: int) -> None:
        while now_ns() < start:          # loop timers may fire early; never start before t0
            await asyncio.sleep((start - now_ns()) / 1e9)
        self._next_in_slot(slot)

    def _next_in_slot(self, slot: int) -> None:
        """Send the slot's next request now (intended = now), or end the slot: measured
        window over, request count reached or the trial stopping."""
        intended = now_ns()
        if self.dispatching and not self._count_reached() and \
                (self.measure_end is None or intended < self.measure_end):
            try:
                self._begin(intended, slot)
                return
            except Exception as error:    # a dispatcher bug: end the trial with it
                if not self.slots_ended.done():
                    self.slots_ended.set_exception(error)
        self._end_slot()

    def _end_slot(self) -> None:
        self.slots_running -= 1
        if self.slots_running == 0 and not self.slots_ended.done():
            self.slots_ended.set_result(None)

    def _back_off(self, slot: int) -> None:
        """The slot's request could not reach its server: try again after the slot's backoff
        (see SlotBackoff), or end the slot at the end of the measured window if that comes
        first (not sooner: the trial's window is measured to its end). The wait is no request's
        latency: the next attempt's intended time is when it is sent, as for every closed-loop
        request."""
        if not self.dispatching:
            self._next_in_slot(slot)      # ends it
            return
        wake_ns = now_ns() + int(self.backoff.failed(slot) * 1e9)
        ends = self.measure_end is not None and wake_ns >= self.measure_end
        if ends:
            wake_ns = self.measure_end
        self.backing_off[slot] = self.loop.call_at(wake_ns / 1e9 + self.loop_offset,
                                                   self._retry_slot, slot, ends)

    def _retry_slot(self, slot: int, end: bool) -> None:
        if end and now_ns() < self.measure_end:       # loop timers may fire a little early
            self.backing_off[slot] = self.loop.call_at(
                (self.measure_end + TIMER_SLACK_NS) / 1e9 + self.loop_offset,
                self._retry_slot, slot, True)
            return
        del self.backing_off[slot]
        if end:
            self._end_slot()
        else:
            self._next_in_slot(slot)

    # --- conversations -----------------------------------------------------------------------
    # A conversation's turn k is due at the end of turn k-1's answer plus a think time: that
    # is its intended time, so a slow answer delays the next turn (the user waits for it) but
    # a late dispatch does not hide. A turn due at or after the measured window's end, after
    # the request count was reached or once the trial stops is not sent: the conversation is
    # cut there. A failed turn ends its conversation (its history would be missing an answer).

    def _may_send(self, intended: int) -> bool:
        return self.dispatching and not self._count_reached() and \
            (self.measure_end is None or intended < self.measure_end)

    def _start_conversation(self, intended: int, slot: int) -> None:
        """Begin the next conversation of the dataset with its first turn at `intended`."""
        number = self.next_conversation
        self.next_conversation += 1
        index = number % len(self.scripts)
        script = self.scripts[index]
        talk = Talk(number, script, slot,
                    think_times_ns(self.config.conversation.think_time, len(script) - 1,
                                   self.think_rng))
        self.talking += 1
        self._send_turn(talk, intended, self.requests[index], self.tokens_in[index])

    def _send_turn(self, talk: Talk, intended: int, request, tokens_in: int) -> None:
        request_id = self.next_id
        self.next_id += 1
        phase = self._phase(intended)
        if phase == _MEASURED:
            self.measured_sent += 1
        attempt = TurnAttempt(request_id, intended, phase, talk.slot, self.protocol,
                              self.config.stream, tokens_in, self._turn_done, talk)
        self._launch(attempt, request, talk.number)    # a conversation stays on one target

    def _next_turn(self, talk: Talk, intended: int) -> None:
        """Send the conversation's next turn: the history so far and the next user message."""
        config = self.config
        message = talk.script[talk.turn]
        history = tuple(talk.history)
        text = transcript(history, message.text)
        ask = RequestInput(model=config.model, prompt=text,
                           max_tokens=self._max_tokens(message.output_tokens),
                           stream=config.stream, ignore_eos=config.dataset.ignore_eos,
                           index=talk.number, executor_index=config.executor_index,
                           input_tokens=estimate_tokens(text), history=history,
                           message=message.text)
        request = self._build(ask)
        if request[2] >= len(self.lines):
            raise config_error(f"api {self.protocol.name!r} sent a later conversation turn "
                               "to another method or path than the first turns",
                               ["fix: a protocol sends every request of a conversation to "
                                "the method and path of its first turn"])
        self._send_turn(talk, intended, request, ask.input_tokens)

    def _turn_done(self, attempt: TurnAttempt) -> None:
        """A turn ended: record it, then send the next turn after its think time, or end the
        conversation (last turn, failure, or the next turn would be too late)."""
        talk = attempt.talk
        attempt.talk = None
        text = None
        if attempt.error == _OK:
            text = self.protocol.answer_text(b"".join(attempt.answer), attempt.stream)
            if text is None:
                attempt.error = _PROTOCOL        # an answer whose text cannot be read
        attempt.answer = None
        self._record(attempt)
        if text is not None and talk.answered(text):
            due = attempt.end_ns + talk.think_ns[talk.turn - 1]
            if self._may_send(due):
                self._think(talk, due)
            else:
                self._conversation_ended(talk, _OK)
        else:
            self._conversation_ended(talk, attempt.error)
        if not self.in_flight and not self.dispatching:
            self.all_done.set()

    def _think(self, talk: Talk, due: int) -> None:
        self.thinking[talk] = self.loop.call_at(due / 1e9 + self.loop_offset,
                                                self._turn_due, talk, due)

    def _turn_due(self, talk: Talk, due: int) -> None:
        if now_ns() < due:               # loop timers may fire a little early
            self._think(talk, due)
            return
        del self.thinking[talk]
        if not self._may_send(due):
            self._conversation_ended(talk, _OK)
            return
        try:
            self._next_turn(talk, due)
        except Exception as error:       # a dispatcher bug: end the trial with it
            if not self.talks_over.done():
                self.talks_over.set_exception(error)
            if self.slots_ended is not None and not self.slots_ended.done():
                self.slots_ended.set_exception(error)

    def _conversation_ended(self, talk: Talk | None, error: int = _OK) -> None:
        """A conversation ended (None: the open-loop schedule did): a closed-loop slot goes
        on with its next one; talks_over resolves when none is held and starts are over."""
        if talk is not None:
            self.talking -= 1
            if talk.slot >= 0:
                self._slot_free(talk.slot, error)
        if self.talking == 0 and self.starts_over and not self.talks_over.done():
            self.talks_over.set_result(None)

    def _expiry_at(self, deadline_ns: int) -> asyncio.TimerHandle:
        return self.loop.call_at(deadline_ns / 1e9 + self.loop_offset, self._expire)

    def _expire(self) -> None:
        """Time out the requests whose deadline has come, then wait for the next deadline.

        One timer for the whole trial instead of one per request (creating and cancelling a
        loop timer per request was a measurable part of the executor's CPU): every request
        has the same timeout and requests are issued in order of intended time (schedule
        order, or "now" in closed loop), so `in_flight`, which keeps insertion order, is in
        deadline order and only its oldest request can be due. The recorded end of a timed-out
        request is its deadline, whenever this runs (Attempt.time_out)."""
        in_flight = self.in_flight
        due = now_ns() + TIMER_SLACK_NS
        while in_flight:
            oldest = next(iter(in_flight))
            if oldest.deadline_ns > due:
                break
            oldest.time_out()         # -> _done, which may issue (but not time) the next one
        self.expiry = self._expiry_at(next(iter(in_flight)).deadline_ns) if in_flight else None

    # --- completion --------------------------------------------------------------------------
    def _done(self, attempt: Attempt) -> None:
        self._record(attempt)
        slot = attempt.slot
        if slot >= 0:
            self._slot_free(slot, attempt.error)
        if not self.in_flight and not self.dispatching:
            self.all_done.set()

    def _record(self, attempt: Attempt) -> None:
        del self.in_flight[attempt]
        self.recorder.add(attempt)
        self._count(attempt)
        if len(self.recorder) >= self.config.batch_max_rows \
                or self.recorder.pending_gaps >= MAX_GAPS:   # the contract's size bound
            self.flush_now.set()

    def _slot_free(self, slot: int, error: int) -> None:
        """A closed-loop slot's request (or conversation) ended with `error`: go on."""
        if error in CONNECT_FAILURES:
            self._back_off(slot)
        else:
            self.backoff.succeeded(slot)
            self._next_in_slot(slot)

    def _count(self, attempt: Attempt) -> None:
        stats = self.stats
        stats.requests += 1
        lag = attempt.send_ns - attempt.intended_ns
        if attempt.send_ns and lag / 1e6 > stats.max_dispatch_lag_ms:
            stats.max_dispatch_lag_ms = lag / 1e6
        if attempt.phase == _WARMUP:
            stats.warmup += 1
        elif attempt.phase == _MEASURED:
            stats.measured += 1
            stats.output_tokens += attempt.tokens_out
            if attempt.error == _OK:
                stats.ok += 1
            else:
                self.errors[attempt.error] += 1

    async def _flush_periodically(self) -> None:
        """Cut a batch every interval, or sooner when `batch_max_rows` requests (or MAX_GAPS
        token gaps) are waiting."""
        period = self.config.batch_interval
        while True:
            try:
                await asyncio.wait_for(self.flush_now.wait(), period)
            except asyncio.TimeoutError:
                pass
            self.flush_now.clear()
            self._flush()

    def _flush(self) -> None:
        interval = max(int((now_ns() - self.t0) / (self.config.batch_interval * 1e9)), 0)
        while (batch := self.recorder.cut(interval)) is not None:   # several if over bounds
            self.sink.send(batch)
