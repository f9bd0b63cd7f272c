"""OpenAI-compatible endpoints: /v1/chat/completions, /v1/completions (SSE or JSON), /v1/models.

Streams follow vLLM/OpenAI: one `data: {chunk}` event per token (the first chat delta also
carries the role), a last chunk with `finish_reason`, with `stream_options.include_usage` a
usage-only chunk (`choices: []`) after it and `"usage": null` on the others, then
`data: [DONE]`. Each event is written as one HTTP chunk the moment the timing model emits it.
With `reasoning_fraction` (config.py) a chat answer's first tokens are reasoning deltas
(`{"reasoning": "..."}`, or `reasoning_content` per `reasoning_field`), as vLLM streams them
with a reasoning parser; a whole answer carries them in `message.reasoning`.

A completions `prompt` may be a list of prompts (strings or token-id lists), as in OpenAI and
vLLM: one choice per prompt, `index` = the prompt's position. Streamed, each event carries one
choice, so the choices' events interleave in the order their tokens are generated; each choice
gets its own finish event, and the usage sums all prompts.
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from hpcbench.servers.simulator.engine import Generation
from hpcbench.servers.simulator.http import Exchange, Request
from hpcbench.servers.simulator.inputs import BadInput, chat_prompt, completion_prompts, output_length

if TYPE_CHECKING:
    from hpcbench.servers.simulator.app import SimulatorApp


def error_body(message: str, kind: str, status: int, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def _usage(generation: Generation) -> dict:
    """Usage of the whole request: the sums over all its prompts."""
    request = generation.submission
    return {"prompt_tokens": request.prompt_tokens,
            "completion_tokens": request.emitted,
            "total_tokens": request.prompt_tokens + request.emitted}


class StreamedOutput:
    """SSE output: every token is one event in one HTTP chunk."""

    __slots__ = ("exchange", "chat", "include_usage", "envelope", "heads", "first_head", "tail",
                 "thought_head", "first_thought_head")

    def __init__(self, exchange: Exchange, chat: bool, include_usage: bool, ident: str,
                 model: str, created: int, choices: int = 1,
                 reasoning_field: str = "reasoning") -> None:
        self.exchange = exchange
        self.chat = chat
        self.include_usage = include_usage
        kind = "chat.completion.chunk" if chat else "text_completion"
        # every event is envelope + choices + "]" + usage-or-not + "}"
        self.envelope = (f'data: {{"id":"{ident}","object":"{kind}","created":{created},'
                         f'"model":{json.dumps(model)},"choices":[').encode()
        # heads[i]: an event of choice i up to its text (chat has one choice)
        if chat:
            self.heads = (self.envelope + b'{"index":0,"delta":{"content":',)
            self.first_head = self.envelope + b'{"index":0,"delta":{"role":"assistant","content":'
            field = reasoning_field.encode()
            self.thought_head = self.envelope + b'{"index":0,"delta":{"%s":' % field
            self.first_thought_head = (self.envelope + b'{"index":0,"delta":{"role":"assistant",'
                                       b'"%s":' % field)
            choice_end = b'},"logprobs":null,"finish_reason":null}]'
        else:
            self.heads = tuple(self.envelope + b'{"index":%d,"text":' % index
                               for index in range(choices))
            self.first_head = self.thought_head = self.first_thought_head = None
            choice_end = b',"logprobs":null,"finish_reason":null}]'
        self.tail = choice_end + (b',"usage":null}\n\n' if include_usage else b'}\n\n')
        exchange.start_stream(200, "text/event-stream; charset=utf-8")

    def token(self, generation: Generation, text: str, text_json: bytes) -> None:
        if generation.emitted < generation.reasoning:
            head = self.first_thought_head if generation.emitted == 0 else self.thought_head
        elif self.first_head is not None and generation.emitted == 0:
            head = self.first_head
        else:
            head = self.heads[generation.index]
        self.exchange.write_chunk(head + text_json + self.tail)

    def finish(self, generation: Generation, last: bool) -> None:
        """The choice's finish event; after the last choice also usage and [DONE]."""
        events = b""
        if generation.emitted:
            content = b'"delta":{}' if self.chat else b'"text":""'
            events += (self.envelope + b'{"index":%d,' % generation.index + content
                       + b',"logprobs":null,"finish_reason":"'
                       + generation.finish_reason.encode() + b'"}]'
                       + (b',"usage":null}\n\n' if self.include_usage else b'}\n\n'))
        if not last:
            self.exchange.write_chunk(events)
            return
        if self.include_usage:
            events += (self.envelope + b'],"usage":' + json.dumps(_usage(generation)).encode()
                       + b'}\n\n')
        self.exchange.end_stream(events + b"data: [DONE]\n\n")

    def abort(self) -> None:
        self.exchange.abort()


class WholeOutput:
    """Non-streaming output: the whole answer as one JSON body when generation ends."""

    __slots__ = ("exchange", "chat", "ident", "model", "created", "reasoning_field")

    def __init__(self, exchange: Exchange, chat: bool, ident: str, model: str,
                 created: int, reasoning_field: str = "reasoning") -> None:
        self.exchange, self.chat, self.ident, self.model, self.created = (
            exchange, chat, ident, model, created)
        self.reasoning_field = reasoning_field

    def token(self, generation: Generation, text: str, text_json: bytes) -> None:
        generation.text.append(text)

    def finish(self, generation: Generation, last: bool) -> None:
        """After the last choice: one body with every choice, in prompt order."""
        if not last:
            return
        self.exchange.respond_json(200, {
            "id": self.ident, "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created, "model": self.model,
            "choices": [self._choice(member) for member in generation.submission.members],
            "usage": _usage(generation)})

    def _choice(self, generation: Generation) -> dict:
        text = "".join(generation.text[generation.reasoning:])
        reason = generation.finish_reason if generation.emitted else "stop"
        if self.chat:
            message = {"role": "assistant", "content": text}
            if generation.reasoning:
                message[self.reasoning_field] = "".join(generation.text[:generation.reasoning])
            return {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
        return {"index": generation.index, "text": text, "logprobs": None,
                "finish_reason": reason}

    def abort(self) -> None:
        self.exchange.abort()


def generate(app: "SimulatorApp", request: Request, exchange: Exchange, chat: bool) -> None:
    """Validate an OpenAI generation request and hand it to the timing model."""
    try:
        body = request.json()
        model = body.get("model")
        if app.served_model(model) is None:
            exchange.respond_json(404, error_body(
                f"The model `{model}` does not exist; this simulator serves "
                f"{', '.join(app.models)} (set 'model').", "NotFoundError", 404, "model"))
            return
        prompts = [chat_prompt(body)] if chat else completion_prompts(body)
        max_tokens = output_length(body, "max_completion_tokens", "max_tokens",
                                   default=app.config.default_max_tokens,
                                   limit=app.config.kv_cache_tokens)
        if body.get("n", 1) != 1:
            raise BadInput(f"field 'n'={body.get('n')!r}: the simulator generates one choice; "
                           "send n=1 or leave it out")
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise BadInput("field 'stream_options' must be an object like {\"include_usage\": true}")
    except ValueError as error:
        exchange.respond_json(400, error_body(str(error), "BadRequestError", 400))
        return
    prefix = "chatcmpl" if chat else "cmpl"
    ident = f"{prefix}-{app.next_id()}"
    stream = bool(body.get("stream"))
    info = {"id": ident, "api": "openai-chat" if chat else "openai-completions",
            "stream": stream, "client_request_id": request.headers.get("x-request-id"),
            "received_perf_ns": request.received_ns}
    fault = app.engine.draw_fault()
    if fault == "error":
        app.reject_with_fault(exchange, info, lambda status: error_body(
            "simulated server error (fault injection)", "InternalServerError", status))
        return
    created = int(time.time())
    if stream:
        output = StreamedOutput(exchange, chat, bool(options.get("include_usage")), ident,
                                model, created, len(prompts), app.config.reasoning_field)
    else:
        output = WholeOutput(exchange, chat, ident, model, created, app.config.reasoning_field)
    ignore_eos = bool(body.get("ignore_eos"))
    generations = [Generation(output, prompt_tokens, max_tokens, ignore_eos, key, app.config,
                              keep_text=not stream, index=index, thinks=chat)
                   for index, (key, prompt_tokens) in enumerate(prompts)]
    submission = app.engine.submit(info, generations, fault)
    exchange.on_close = lambda: app.engine.cancel(submission)


def models(app: "SimulatorApp", request: Request, exchange: Exchange) -> None:
    exchange.respond_json(200, {"object": "list", "data": [
        {"id": name, "object": "model", "created": app.started_wall, "owned_by": "hpcbench",
         "root": name, "parent": None, "max_model_len": app.config.kv_cache_tokens}
        for name in app.models]})
