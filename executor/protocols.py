"""The built-in HTTP inference APIs: OpenAI chat and completions, Ollama chat and generate.

Each is an `HttpProtocol` (executor/wire.py), registered by name in
executor/protocol_registry.py. A protocol is stateless; per-request state (line buffer, chunk
times, usage) lives on the `Attempt`. Streams are split into lines with one `bytes.split` per
network read.

Counting rules (docs/metrics.md, "Counting rules"):
- OpenAI SSE (`data: {...}` lines): comments (`:` lines), keep-alives, `event:`/`id:` lines are
  skipped; `[DONE]` ends the stream; a chunk whose first choice carries a delta with `content`
  (chat) or a `text` field (completions) is a content chunk even when the text is empty, except
  an empty one that only closes the choice (`finish_reason` set, no text) or only announces the
  role (vLLM's first chat chunk, `{"role": "assistant", "content": ""}`); a chunk with `usage`
  (typically the usage-only final chunk with empty `choices`) sets the server counts
  (`usage.completion_tokens_details.reasoning_tokens`, where given, the reasoning count).
  A chat delta without `content` but with `reasoning` (vLLM >= 0.10) or `reasoning_content`
  (older vLLM, DeepSeek) is a reasoning chunk: a token like any other, also counted apart.
- Ollama NDJSON: every object before the one with `"done": true` is a content chunk (a
  reasoning chunk when it carries only `thinking`); the final object gives `eval_count` /
  `prompt_eval_count` (and is a chunk only if it carries text).
- Non-streaming: the whole body is one chunk at the end; counts from usage / eval_count.
Each data line is one event: OpenAI-compatible servers never split an event's data over lines.
"""
from __future__ import annotations

import orjson

from hpcbench.executor.wire import HttpProtocol, HttpRequest, RequestInput
from hpcbench.proto.samples import ErrorClass

_loads = orjson.loads    # ~5x faster than json.loads per chunk: it is on the per-token path
MAX_LINE_BYTES = 4 * 1024 * 1024    # a longer unfinished line is no token stream: PROTOCOL
# what reading a JSON document of an unexpected shape raises (list for dict, str for list, ...)
_SHAPE_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError)


def _complete_lines(attempt, data: bytes, now: int) -> list[bytes]:
    """The lines `data` completes; the unfinished rest waits in `attempt.buffer`. A rest longer
    than MAX_LINE_BYTES ends the request as PROTOCOL (memory stays bounded)."""
    buffer = attempt.buffer + data if attempt.buffer else data
    lines = buffer.split(b"\n")
    attempt.buffer = lines.pop()
    if len(attempt.buffer) > MAX_LINE_BYTES:
        attempt.give_up(ErrorClass.PROTOCOL, now)
        return []
    return lines


# printable ASCII but quote and backslash: text made of these is a JSON string body as written
_PLAIN = bytes(byte for byte in range(32, 127) if byte not in b'"\\')


def _plain_text(text: bytes) -> bool:
    """Non-empty bytes that are a complete JSON string body as written (nothing escaped,
    nothing that ends the string or is invalid in it). `lstrip` leaves nothing exactly when
    every byte is in _PLAIN; it is ~2.5x faster than `translate` on token-sized text."""
    return bool(text) and not text.lstrip(_PLAIN)


class LineProtocol(HttpProtocol):
    """A stream of lines (SSE, NDJSON): `end` reads a last line that came without a newline."""

    path = "/"

    def end(self, attempt, now: int) -> None:
        if attempt.buffer:
            self.feed(attempt, b"\n", now)


class OpenAIProtocol(LineProtocol):
    """openai-chat (/v1/chat/completions) and openai-completions (/v1/completions)."""

    chat = True

    def __init__(self, chat: bool | None = None) -> None:
        if chat is not None:
            self.chat = chat
        self.batches = not self.chat    # completions take a list of prompts
        self.path = "/v1/chat/completions" if self.chat else "/v1/completions"
        self._text_key = b'"content":"' if self.chat else b'"text":"'  # where a template's text is

    def request(self, ask: RequestInput) -> HttpRequest:
        """A list of prompts (completions only) asks for one completion per prompt."""
        body = {"model": ask.model, "stream": ask.stream}
        if self.chat:
            body["messages"] = ask.messages()
        else:
            body["prompt"] = ask.prompt
        if ask.max_tokens is not None:
            body["max_tokens"] = ask.max_tokens
        if ask.stream:
            body["stream_options"] = {"include_usage": True}
        if ask.ignore_eos:
            body["ignore_eos"] = True      # vLLM / simulator extension
        return HttpRequest(self.path, body)

    def feed(self, attempt, data: bytes, now: int) -> None:
        if not attempt.buffer:                  # one whole event per read, typically
            template = attempt.template
            if template is not None and data.startswith(template[0]) \
                    and data.endswith(template[2]):
                text = data[len(template[0]):-len(template[2])]
                if text and not text.lstrip(_PLAIN):     # _plain_text, inlined
                    attempt.chunk_times.append(now)
                    return
            if data[-2:] == b"\n\n" and data[:5] == b"data:" \
                    and data.find(b"\n") == len(data) - 2:
                self._event(attempt, data[5:-2].strip(), now)
                return
        for line in _complete_lines(attempt, data, now):
            if line[:5] == b"data:":
                template = attempt.template
                if template is not None and line.startswith(template[0]) \
                        and line.endswith(template[1]) \
                        and _plain_text(line[len(template[0]):-len(template[1])]):
                    attempt.chunk_times.append(now)
                else:
                    self._event(attempt, line[5:].strip(), now)

    def _event(self, attempt, payload: bytes, now: int) -> None:
        if payload == b"[DONE]" or not payload:
            return
        try:
            event = _loads(payload)
            text = self._interpret(attempt, event, now)
        except _SHAPE_ERRORS:
            attempt.error = ErrorClass.PROTOCOL
            return
        if text and not event.get("usage") and "error" not in event:
            # (re)learn from every parsed content chunk: the first one may differ from the
            # rest (the simulator's and some servers' first chat chunk also carries the role)
            template = self._template(payload, text)
            if template is not None:
                attempt.template = template

    def _template(self, payload: bytes, text: str) -> tuple[bytes, bytes, bytes] | None:
        """The bytes around the text of a content chunk just parsed (one token, no usage, no
        error) as (`data: ` + before, after, after + blank line), so the stream's next
        chunks are recognised without parsing them (JSON parsing and lookups were most of the
        executor's Python time per token). A later line that is these bytes around another
        `_plain_text` is the same JSON document but for that one string (such text can
        neither end the string nor be invalid in it), hence again exactly one token. Servers
        repeat id, model and created in every chunk of a stream, so this holds for all its
        content chunks; anything else (role, finish, usage, escapes, non-ASCII text) is parsed
        in full. None when the text is not found as written (escapes, other spacing)."""
        start = payload.find(self._text_key)
        if start < 0:
            return None
        start += len(self._text_key)
        end = payload.find(b'"', start)
        if end < 0 or not _plain_text(payload[start:end]) or payload[start:end].decode() != text:
            return None
        return b"data: " + payload[:start], payload[end:], payload[end:] + b"\n\n"

    def _interpret(self, attempt, event: dict, now: int) -> str | None:
        """Count the event; return its text when it was counted as a token, else None."""
        choices = event.get("choices")
        if choices:
            choice = choices[0]
            if self.chat:
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if not text:
                    thought = delta.get("reasoning") or delta.get("reasoning_content")
                    if thought:
                        attempt.reasoning_chunk(now)
                        return None               # no template: answer chunks only
                    if text is not None and "role" in delta:
                        text = None               # vLLM's role announcement: no token yet
            else:
                text = choice.get("text")
            if text or (text is not None and choice.get("finish_reason") is None):
                attempt.answer_chunk(now)
            else:
                text = None
        else:
            text = None
        usage = event.get("usage")
        if usage:
            _usage_counts(attempt, usage)
        if "error" in event:
            attempt.error = ErrorClass.PROTOCOL
        return text if isinstance(text, str) else None

    def finish(self, attempt, body: bytes, now: int) -> None:
        """Non-streaming body: one JSON object with choices and usage."""
        try:
            answer = _loads(body)
            choice = (answer.get("choices") or [{}])[0]
            message = choice["message"] if self.chat else {}
            text = message.get("content") if self.chat else choice.get("text")
            thought = message.get("reasoning") or message.get("reasoning_content")
            _usage_counts(attempt, answer.get("usage") or {})
        except _SHAPE_ERRORS:
            attempt.error = ErrorClass.PROTOCOL
            return
        if thought:
            attempt.first_reasoning_ns = now    # the whole answer arrives at once
        if text or attempt.tokens_out:
            attempt.answer_chunk(now)

    def answer_text(self, answer: bytes, streamed: bool) -> str | None:
        """The answer's content (chat) or text (completions): a stream's deltas joined, or a
        whole body's first choice. Reasoning content is not part of it (it is not sent back
        in the next turn's history)."""
        try:
            if not streamed:
                choice = (_loads(answer).get("choices") or [{}])[0]
                text = choice["message"].get("content") if self.chat else choice.get("text")
                return text if isinstance(text, str) else ""
            parts = []
            for line in answer.split(b"\n"):
                payload = line[5:].strip() if line[:5] == b"data:" else b""
                if not payload or payload == b"[DONE]":
                    continue
                choices = _loads(payload).get("choices")
                if choices:
                    choice = choices[0]
                    text = (choice.get("delta") or {}).get("content") if self.chat \
                        else choice.get("text")
                    if isinstance(text, str):
                        parts.append(text)
            return "".join(parts)
        except _SHAPE_ERRORS:
            return None


def _usage_counts(attempt, usage: dict) -> None:
    """The server's token counts from an OpenAI `usage` object."""
    attempt.server_counts(usage.get("prompt_tokens"), usage.get("completion_tokens"))
    details = usage.get("completion_tokens_details")
    if details:
        attempt.server_reasoning_tokens(details.get("reasoning_tokens"))


class OllamaProtocol(LineProtocol):
    """ollama-chat (/api/chat) and ollama-generate (/api/generate)."""

    chat = True

    def __init__(self, chat: bool | None = None) -> None:
        if chat is not None:
            self.chat = chat
        self.path = "/api/chat" if self.chat else "/api/generate"

    def request(self, ask: RequestInput) -> HttpRequest:
        body = {"model": ask.model, "stream": ask.stream}
        if self.chat:
            body["messages"] = ask.messages()
        else:
            body["prompt"] = ask.prompt
        options = {}
        if ask.max_tokens is not None:
            options["num_predict"] = ask.max_tokens
        if ask.ignore_eos:
            options["ignore_eos"] = True
        if options:
            body["options"] = options
        return HttpRequest(self.path, body)

    def feed(self, attempt, data: bytes, now: int) -> None:
        for line in _complete_lines(attempt, data, now):
            if line.strip():
                self._object(attempt, line, now)

    def _object(self, attempt, line: bytes, now: int) -> None:
        try:
            self._interpret(attempt, _loads(line), now)
        except _SHAPE_ERRORS:
            attempt.error = ErrorClass.PROTOCOL

    def _interpret(self, attempt, answer: dict, now: int) -> None:
        done = answer.get("done")
        if "error" in answer:
            attempt.error = ErrorClass.PROTOCOL
            return
        if not done:
            if self._thinking(answer) and not self._text(answer):
                attempt.reasoning_chunk(now)
            else:
                attempt.answer_chunk(now)
            return
        if self._text(answer):
            attempt.answer_chunk(now)
        elif self._thinking(answer):
            attempt.reasoning_chunk(now)
        attempt.server_counts(answer.get("prompt_eval_count"), answer.get("eval_count"))

    def _text(self, answer: dict):
        if self.chat:
            message = answer.get("message")
            return message.get("content") if isinstance(message, dict) else None
        return answer.get("response")

    def _thinking(self, answer: dict):
        """The reasoning text of an object (`think: true` requests): `message.thinking` in
        chat, `thinking` in generate."""
        if self.chat:
            message = answer.get("message")
            return message.get("thinking") if isinstance(message, dict) else None
        return answer.get("thinking")

    def finish(self, attempt, body: bytes, now: int) -> None:
        """Non-streaming body: the single final object."""
        self._object(attempt, body, now)
        if attempt.chunks == 0 and attempt.tokens_out:
            attempt.answer_chunk(now)

    def answer_text(self, answer: bytes, streamed: bool) -> str | None:
        """The message content (chat) or response (generate) of every object joined: a stream
        has one per line, a whole answer is one object."""
        try:
            parts = []
            for line in answer.split(b"\n"):
                if line.strip():
                    text = self._text(_loads(line))
                    if isinstance(text, str):
                        parts.append(text)
            return "".join(parts)
        except _SHAPE_ERRORS:
            return None


class OpenAIChat(OpenAIProtocol):
    chat = True


class OpenAICompletions(OpenAIProtocol):
    chat = False


class OllamaChat(OllamaProtocol):
    chat = True


class OllamaGenerate(OllamaProtocol):
    chat = False
