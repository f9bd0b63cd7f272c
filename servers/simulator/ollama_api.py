"""Ollama endpoints: /api/generate and /api/chat (NDJSON stream or one JSON), /api/tags,
/api/pull (streamed status lines), /api/ps, /api/version (also served as vLLM's /version; the
simulator's version is hpcbench's) and `GET /`.

Streams are one JSON object per line and per token (`done: false`), then a final object with
`done: true`, `done_reason`, `prompt_eval_count`, `eval_count` and durations in nanoseconds.
Streaming is the default, as in Ollama; `"stream": false` gives one object.
With `reasoning_fraction` (config.py) the first tokens are `thinking` text (chat:
`message.thinking`), unless the request sets `"think": false`, as Ollama's thinking models do.
Durations: `load_duration` is the time spent waiting for a batch slot (the model is always
loaded), `prompt_eval_duration` the prefill, `eval_duration` first to last token.
"""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING

from hpcbench.servers.simulator.engine import Generation
from hpcbench.servers.simulator.http import Exchange, Request
from hpcbench.servers.simulator.inputs import BadInput, chat_prompt, output_length

if TYPE_CHECKING:
    from hpcbench.servers.simulator.app import SimulatorApp

try:
    VERSION = package_version("hpcbench")
except PackageNotFoundError:   # run from a source tree that is not installed
    VERSION = "unknown"
MODEL_DIGEST = "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72"
MODEL_SIZE = 2_019_393_189
DETAILS = {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
           "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _final_fields(generation: Generation, end: float) -> dict:
    """Ollama's done object statistics, in nanoseconds."""
    emitted = generation.emitted
    first = generation.first if emitted else end
    admitted = generation.admitted or generation.arrival
    return {"done": True, "done_reason": generation.finish_reason if emitted else "stop",
            "total_duration": int((end - generation.arrival) * 1e9),
            "load_duration": int((admitted - generation.arrival) * 1e9),
            "prompt_eval_count": generation.prompt_tokens,
            "prompt_eval_duration": int((first - admitted) * 1e9),
            "eval_count": emitted,
            "eval_duration": int(((generation.last if emitted else end) - first) * 1e9)}


class StreamedOutput:
    """NDJSON output: one line per token, each written as one HTTP chunk."""

    __slots__ = ("exchange", "chat", "model", "head", "tail", "loop_time")

    def __init__(self, exchange: Exchange, chat: bool, model: str, loop_time) -> None:
        self.exchange, self.chat, self.model, self.loop_time = exchange, chat, model, loop_time
        self.head = f'{{"model":{json.dumps(model)},"created_at":"'.encode()
        self.tail = (b'},"done":false}\n' if chat else b',"done":false}\n')
        exchange.start_stream(200, "application/x-ndjson")

    def token(self, generation: Generation, text: str, text_json: bytes) -> None:
        if generation.emitted < generation.reasoning:
            middle = (b'","message":{"role":"assistant","content":"","thinking":' if self.chat
                      else b'","response":"","thinking":')
        else:
            middle = (b'","message":{"role":"assistant","content":' if self.chat
                      else b'","response":')
        self.exchange.write_chunk(self.head + now_iso().encode() + middle + text_json
                                  + self.tail)

    def finish(self, generation: Generation, last: bool = True) -> None:
        final = _message(self.chat, self.model, "") | _final_fields(generation, self.loop_time())
        self.exchange.end_stream(json.dumps(final).encode() + b"\n")

    def abort(self) -> None:
        self.exchange.abort()


class WholeOutput:
    """`"stream": false`: one JSON object when generation ends."""

    __slots__ = ("exchange", "chat", "model", "loop_time")

    def __init__(self, exchange: Exchange, chat: bool, model: str, loop_time) -> None:
        self.exchange, self.chat, self.model, self.loop_time = exchange, chat, model, loop_time

    def token(self, generation: Generation, text: str, text_json: bytes) -> None:
        generation.text.append(text)

    def finish(self, generation: Generation, last: bool = True) -> None:
        body = _message(self.chat, self.model, "".join(generation.text[generation.reasoning:]))
        if generation.reasoning:
            thinking = "".join(generation.text[:generation.reasoning])
            (body["message"] if self.chat else body)["thinking"] = thinking
        self.exchange.respond_json(200, body | _final_fields(generation, self.loop_time()))

    def abort(self) -> None:
        self.exchange.abort()


def _message(chat: bool, model: str, text: str) -> dict:
    body = {"model": model, "created_at": now_iso()}
    if chat:
        body["message"] = {"role": "assistant", "content": text}
    else:
        body["response"] = text
    return body


# a Go duration as Ollama's keep_alive string must be: "0", or number+unit pieces ("1h30m", "-5m")
GO_DURATION = re.compile(r"[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+)")


def check_keep_alive(value) -> None:
    """Reject a keep_alive Ollama would reject: a string that is not a Go duration (a bare
    "-1" fails there: "missing unit in duration"), or neither a number nor a string."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return
    if isinstance(value, str) and GO_DURATION.fullmatch(value):
        return
    raise BadInput(f"time: missing unit in duration {json.dumps(value)}"
                   if isinstance(value, str) else
                   f"keep_alive must be a number of seconds or a duration string, not "
                   f"{json.dumps(value)}")


def generate(app: "SimulatorApp", request: Request, exchange: Exchange, chat: bool) -> None:
    """Validate an Ollama generate/chat request and hand it to the timing model."""
    try:
        body = request.json()
        model = body.get("model")
        if app.served_model(model) is None:
            exchange.respond_json(404, {"error": f"model '{model}' not found, try pulling it "
                                                 f"first (served: {', '.join(app.models)})"})
            return
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise BadInput("field 'options' must be an object like {\"num_predict\": 128}")
        check_keep_alive(body.get("keep_alive"))
        if chat:
            if not body.get("messages"):
                exchange.respond_json(200, _message(True, model, "") |
                                      {"done": True, "done_reason": "load"})
                return
            key, prompt_tokens = chat_prompt(body)
        else:
            key = body.get("prompt") or ""
            if not isinstance(key, str):
                raise BadInput("field 'prompt' must be a string")
            if not key:
                exchange.respond_json(200, _message(False, model, "") |
                                      {"done": True, "done_reason": "load"})
                return
            prompt_tokens = len(key.split())
        num_predict = options.get("num_predict")
        if num_predict in (-1, -2):   # Ollama's "until done" / "fill the context"
            num_predict = None
        max_tokens = output_length({"options.num_predict": num_predict}, "options.num_predict",
                                   default=app.config.default_max_tokens,
                                   limit=app.config.kv_cache_tokens)
    except ValueError as error:
        exchange.respond_json(400, {"error": str(error)})
        return
    stream = body.get("stream", True) is not False
    info = {"id": f"ollama-{app.next_id()}", "api": "ollama-chat" if chat else "ollama-generate",
            "stream": stream, "client_request_id": request.headers.get("x-request-id"),
            "received_perf_ns": request.received_ns}
    fault = app.engine.draw_fault()
    if fault == "error":
        app.reject_with_fault(exchange, info,
                              lambda status: {"error": "simulated server error (fault injection)"})
        return
    loop_time = time.perf_counter
    output = (StreamedOutput if stream else WholeOutput)(exchange, chat, model, loop_time)
    generation = Generation(output, prompt_tokens, max_tokens, bool(options.get("ignore_eos")),
                            key, app.config, keep_text=not stream,
                            thinks=body.get("think") is not False)
    submission = app.engine.submit(info, [generation], fault)
    exchange.on_close = lambda: app.engine.cancel(submission)


def tags(app: "SimulatorApp", request: Request, exchange: Exchange) -> None:
    exchange.respond_json(200, {"models": [_model_entry(app, name) for name in app.models]})


def ps(app: "SimulatorApp", request: Request, exchange: Exchange) -> None:
    expires = datetime.fromtimestamp(time.time() + 300, timezone.utc).isoformat()
    exchange.respond_json(200, {"models": [
        _model_entry(app, name) | {"expires_at": expires, "size_vram": MODEL_SIZE}
        for name in app.models]})


def _model_entry(app: "SimulatorApp", name: str) -> dict:
    full = name if ":" in name else f"{name}:latest"
    modified = datetime.fromtimestamp(app.started_wall, timezone.utc).isoformat()
    return {"name": full, "model": full, "modified_at": modified, "size": MODEL_SIZE,
            "digest": MODEL_DIGEST, "details": DETAILS}


def version(app: "SimulatorApp", request: Request, exchange: Exchange) -> None:
    exchange.respond_json(200, {"version": VERSION})


def root(app: "SimulatorApp", request: Request, exchange: Exchange) -> None:
    exchange.respond(200, b"Ollama is running", "text/plain; charset=utf-8")


def pull(app: "SimulatorApp", request: Request, exchange: Exchange) -> None:
    """Pretend to download a model: status lines as Ollama streams them; the model is served
    afterwards."""
    try:
        body = request.json()
    except ValueError as error:
        exchange.respond_json(400, {"error": str(error)})
        return
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name.strip():
        exchange.respond_json(400, {"error": "field 'model' must name the model to pull"})
        return
    app.add_model(name)
    if body.get("stream", True) is False:
        exchange.respond_json(200, {"status": "success"})
        return
    digest = f"sha256:{MODEL_DIGEST}"
    steps = [{"status": "pulling manifest"},
             {"status": f"pulling {MODEL_DIGEST[:12]}", "digest": digest, "total": MODEL_SIZE,
              "completed": 0},
             {"status": f"pulling {MODEL_DIGEST[:12]}", "digest": digest, "total": MODEL_SIZE,
              "completed": MODEL_SIZE},
             {"status": "verifying sha256 digest"}, {"status": "writing manifest"},
             {"status": "success"}]
    exchange.start_stream(200, "application/x-ndjson")
    for step in steps[:-1]:
        exchange.write_chunk(json.dumps(step).encode() + b"\n")
    exchange.end_stream(json.dumps(steps[-1]).encode() + b"\n")
