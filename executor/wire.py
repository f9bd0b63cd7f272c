"""The interface of an executor wire protocol: how requests are phrased and answers are read.

Every API the executor speaks is one `WireProtocol` object, found by name in the protocol
registry (executor/protocol_registry.py): the built-ins (executor/protocols.py, executor/resp.py)
and those a plugin registers in the `hpcbench.protocols` entry-point group, alike.

Configuration. `workload.api_config` is the protocol's own: `check_config` checks it (recipe
validation and the executor both ask) and completes it with defaults; each trial then runs
on a copy of the protocol whose `config` is that result (`configured`).

Requests. Before a trial the engine asks the protocol for one request per prompt of the dataset
(`request(RequestInput)`), so nothing is encoded while the load runs. `RequestInput` carries the
prompt text, the model, the output length to ask for and the request's position. An
`HttpProtocol` answers an `HttpRequest` (method, path, body, headers); a `FramedProtocol`
answers the bytes to send.
Conversations (`workload.conversation`) are the exception: a turn's request is built when the
turn is due, since it carries the answers received so far. Its `RequestInput` has `history`
(earlier user messages and answers) and `message` (the new one); `messages()` gives them as
chat messages and `prompt` holds the same conversation as one transcript (`transcript`), so a
protocol that only reads `prompt` still sends the whole history. `answer_text` reads an
answer's text back for the next turn.

Answers. A protocol object serves every request of its trial and keeps nothing per request:
what one request has read so far lives on its `Attempt` (executor/attempt.py), which the
protocol tells what it found:
- `attempt.chunk(now)` counts one content chunk (a token event) at `now`, the kernel's receive
  stamp of the bytes that carried it; the first is the first token (TTFT), every later one
  adds an inter-token gap (ITL). A protocol whose answers are not token streams calls it once
  per good answer, so TTFT is the response time and every request counts one "token";
- `attempt.server_counts(prompt_tokens, output_tokens)` records the server's own token counts,
  which take precedence over counted chunks;
- `attempt.error = ErrorClass.X` classifies a failure the bytes reveal (PROTOCOL for a malformed
  answer, HTTP_STATUS for an error the server states in a successful response); an answer
  that never counted a chunk and has no error becomes NO_TOKENS. Transport failures, timeouts
  and non-2xx HTTP statuses are classified by the executor (the status is recorded), not the
  protocol;
- `attempt.buffer` (bytes, empty at first) is the protocol's to keep an unfinished line or
  frame of a stream between reads.
The executor calls `feed(attempt, data, now)` per read of a streamed answer, then `end(attempt,
now)` once it is complete (judge the whole stream there: a missing terminal event, say), or
`finish(attempt, body, now)` once with a whole answer (a request with `stream` false, or every
answer of a protocol whose `streams` is false). `feed`, `end` and `finish` are on the
per-token and per-request path: they must not block and should not allocate more than they
need.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from hpcbench.common.errors import config_error
from hpcbench.executor.http import HttpConnection


@dataclass(frozen=True)
class RequestInput:
    """What one request is built from (the engine builds one per prompt before the trial)."""

    model: str
    prompt: str | list[str]     # the prompt's text; `batch` texts when the protocol batches
    max_tokens: int | None      # output tokens to ask for (dataset length capped by max_tokens)
    stream: bool                # ask for a streamed answer (never true when `streams` is false)
    ignore_eos: bool            # ask for exactly max_tokens (dataset.ignore_eos)
    index: int = 0              # the request's position in the dataset, 0 ..
    executor_index: int = 0     # which executor of the session builds it
    input_tokens: int = 0       # the prompt's (or prompts') estimated length in tokens
    # a conversation turn: the earlier (user message, answer as received) pairs; `prompt` is
    # then the whole transcript (`transcript`), for protocols that take one text
    history: tuple[tuple[str, str], ...] = ()
    message: str = ""           # a conversation turn's new user message ("" otherwise)

    def messages(self) -> list[dict[str, str]]:
        """The chat messages of this request: the history's user/assistant pairs, then the new
        user message (a single request: its prompt as the one user message)."""
        if not self.history:
            return [{"role": "user", "content": self.prompt}]
        messages = []
        for question, answer in self.history:
            messages += [{"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": self.message})
        return messages


def transcript(history: tuple[tuple[str, str], ...], message: str) -> str:
    """A conversation as one text, for completion-style APIs: every turn as "User: ..." and
    "Assistant: ...", blank lines between, ending with "Assistant:" for the model to continue.
    A first turn (no history) is the user's message alone, as a single request would be."""
    if not history:
        return message
    parts = [f"User: {question}\n\nAssistant: {answer}" for question, answer in history]
    parts.append(f"User: {message}\n\nAssistant:")
    return "\n\n".join(parts)


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request of a protocol: the request line's method and path (after the target's
    base path), a body (a dict or list is sent as JSON, with a service plugin's
    `request_extras` added to a dict; bytes are sent as they are; None: no body) and headers
    of its own (Content-Type, authorisation, ...; the executor writes Host, Content-Length,
    User-Agent and X-Request-Id itself)."""

    path: str
    body: dict | list | bytes | None = None
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)


class WireProtocol:
    """What every protocol declares. `name` is its `workload.api` value."""

    name: str = ""
    scheme: str = "http"      # the URL scheme of its targets (`workload.targets`, endpoints)
    batches: bool = False     # can one request carry several prompts (`workload.batch` > 1)
    streams: bool = True      # can answers come as streams; if not, every answer is read whole
    config: dict = {}         # the trial's workload.api_config, as check_config returned it

    def check_config(self, config: dict) -> dict:
        """`workload.api_config` checked (E006 naming `workload.api_config.KEY` and the fix,
        via hpcbench.common.errors.config_error) and completed with defaults: what every
        `RequestInput.config` then carries. The default takes no keys."""
        if config:
            raise config_error(f"workload.api_config {', '.join(map(str, config))}: api "
                               f"{self.name!r} takes no configuration",
                               ["fix: remove workload.api_config"])
        return {}

    def configured(self, config: dict) -> "WireProtocol":
        """This protocol for one trial: a shallow copy whose `config` is `config` (the checked
        workload.api_config); the registry's instance stays shared and unconfigured."""
        trial = copy.copy(self)
        trial.config = config
        return trial

    def request(self, ask: RequestInput):
        """The request for one prompt: an `HttpRequest` (HttpProtocol) or bytes (FramedProtocol)."""
        raise NotImplementedError

    def feed(self, attempt, data: bytes, now: int) -> None:
        """Bytes of a streamed answer as they arrive (`now`: their receive time, ns)."""
        raise NotImplementedError

    def end(self, attempt, now: int) -> None:
        """A streamed answer is complete (after its last `feed`): judge it as a whole if need
        be. Nothing by default."""

    def finish(self, attempt, body: bytes, now: int) -> None:
        """A whole answer at once (a non-streamed request, or a framed protocol's reply)."""
        raise NotImplementedError

    def answer_text(self, answer: bytes, streamed: bool) -> str | None:
        """The text of one complete answer (all its bytes, a stream's included), which a
        conversation's next turn sends back as history; None when it cannot be read. Called
        once per conversation turn, after the answer ended, never on the per-token path. A
        protocol without it cannot run conversations (`workload.conversation`)."""
        raise NotImplementedError

    @property
    def reads_answers(self) -> bool:
        """Whether this protocol implements `answer_text` (conversations need it)."""
        return type(self).answer_text is not WireProtocol.answer_text


class HttpProtocol(WireProtocol):
    """An API spoken over the executor's HTTP/1.1 client: `request` returns an `HttpRequest`."""

    def request(self, ask: RequestInput) -> HttpRequest:
        raise NotImplementedError


class FramedProtocol(WireProtocol):
    """An API that is not HTTP: `request` returns the encoded bytes of one request, and the
    protocol names the connection class that frames one reply per request (a subclass of
    executor/http.py's HttpConnection, so pooling, timeouts and receive stamps stay the
    executor's)."""

    connection_class: type[HttpConnection] = HttpConnection

    def request(self, ask: RequestInput) -> bytes:
        raise NotImplementedError
