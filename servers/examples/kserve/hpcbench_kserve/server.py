"""A small KServe v2 inference server (aiohttp) computing something deterministic.

    python -m hpcbench_kserve.server --http-address 127.0.0.1 --http-port 8000 --model checksum

Every model takes any input tensors (JSON data, BYTES or numbers) and answers
- OUTPUT0 (FP64, one element per input): the sum of a numeric input's elements, or the total
  UTF-8 length of a BYTES input's strings;
- OUTPUT1 (INT64, [1]): how many elements the inputs had,
after `--delay` seconds, with at most `--instances` inferences of a model at a time (the rest
queue), so load shows as latency the way it does on a real server.

It speaks the parts of the protocol hpcbench's examples use, with Triton's flag names, so it
can stand in for Triton's HTTP API where Triton cannot run (no GPU, no binary):
- health: GET /v2/health/live, /v2/health/ready; server metadata GET /v2;
- models: GET /v2/models/{m}[/versions/{v}], .../ready, .../config; POST .../infer;
- model repository: POST /v2/repository/index, /v2/repository/models/{m}/load (with
  `{"parameters": {"config": "<JSON>"}}` to load it with that configuration), .../unload.
Models come from `--model NAME` and the subfolders of `--model-repository` (a folder per
model; `max_batch_size: N` in its config.pbtxt is read, nothing else). With
`--model-control-mode explicit` only `--load-model` ones are loaded at start. A model's
configuration takes effect: `max_batch_size` > 0 bounds every input's first dimension (400
beyond it), `instance_group[0].count` is how many inferences run at once. tritonserver's
gRPC and metrics address and port flags are accepted and ignored (it serves HTTP only); any
other unknown flag is an error.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
from pathlib import Path

from aiohttp import web

from hpcbench_kserve import __version__

NUMERIC = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
           "FP16", "FP32", "FP64", "BF16")
MAX_BODY_BYTES = 64 * 2**20
# tritonserver flags hpcbench's Triton plugin passes that a stand-in has no use for
IGNORED = ("--grpc-address", "--grpc-port", "--metrics-address", "--metrics-port")


class Model:
    def __init__(self, name: str, max_batch_size: int = 0, instances: int = 1) -> None:
        self.name = name
        self.loaded = False
        self.inferences = 0
        self.apply({"name": name, "max_batch_size": max_batch_size,
                    "instance_group": [{"count": instances, "kind": "KIND_CPU"}]})

    def apply(self, config: dict) -> None:
        """Take a model configuration (Triton's JSON form); ValueError when it is unusable."""
        if not isinstance(config, dict) or config.get("name", self.name) != self.name:
            raise ValueError("a configuration object with this model's name")
        batch = config.get("max_batch_size", 0)
        groups = config.get("instance_group") or [{"count": 1}]
        count = groups[0].get("count", 1) if isinstance(groups[0], dict) else None
        if not isinstance(batch, int) or batch < 0 or not isinstance(count, int) or count < 1:
            raise ValueError("max_batch_size >= 0 and instance_group[0].count >= 1")
        self.config = {**config, "name": self.name, "platform": "hpcbench_example",
                       "backend": "hpcbench_example"}
        self.max_batch_size, self.slots = batch, asyncio.Semaphore(count)

    def metadata(self) -> dict:
        return {"name": self.name, "versions": ["1"], "platform": "hpcbench_example",
                "inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": "OUTPUT0", "datatype": "FP64", "shape": [-1]},
                            {"name": "OUTPUT1", "datatype": "INT64", "shape": [1]}]}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _leaves(data) -> list:
    if isinstance(data, list):
        return [leaf for item in data for leaf in _leaves(item)]
    return [data]


def compute(model: Model, request: dict) -> dict:
    """The answer to an inference request; ValueError naming what is wrong with it."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ValueError("the request needs a non-empty 'inputs' list")
    sums, elements = [], 0
    for tensor in inputs:
        if not isinstance(tensor, dict):
            raise ValueError("every input is an object")
        name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if not isinstance(name, str) or datatype not in (*NUMERIC, "BYTES"):
            raise ValueError(f"input {name!r}: a name and a KServe datatype are needed")
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError(f"input {name}: shape must be a list of sizes")
        if model.max_batch_size and (not shape or shape[0] > model.max_batch_size):
            raise ValueError(f"input {name}: batch size {shape[0] if shape else None} exceeds "
                             f"the model's max_batch_size {model.max_batch_size}")
        data = _leaves(tensor.get("data"))
        if len(data) != math.prod(shape):
            raise ValueError(f"input {name}: {len(data)} elements for shape {shape}")
        if datatype == "BYTES":
            if not all(isinstance(item, str) for item in data):
                raise ValueError(f"input {name}: BYTES data must be strings")
            sums.append(float(sum(len(item.encode()) for item in data)))
        else:
            if not all(isinstance(item, (int, float)) for item in data):
                raise ValueError(f"input {name}: {datatype} data must be numbers")
            sums.append(float(sum(data)))
        elements += len(data)
    outputs = {"OUTPUT0": {"name": "OUTPUT0", "datatype": "FP64", "shape": [len(sums)],
                           "data": sums},
               "OUTPUT1": {"name": "OUTPUT1", "datatype": "INT64", "shape": [1],
                           "data": [elements]}}
    wanted = request.get("outputs")
    if wanted is not None:
        names = [item.get("name") if isinstance(item, dict) else None for item in wanted]
        unknown = [name for name in names if name not in outputs]
        if unknown:
            raise ValueError(f"unknown output {unknown[0]!r}; the model has OUTPUT0, OUTPUT1")
        outputs = {name: outputs[name] for name in names}
    answer = {"model_name": model.name, "model_version": "1", "outputs": list(outputs.values())}
    if "id" in request:
        answer["id"] = request["id"]
    return answer


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.delay = args.delay
        self.models: dict[str, Model] = {}
        self.explicit = args.model_control_mode == "explicit"
        repository = Path(args.model_repository) if args.model_repository else None
        if repository is not None:
            if not repository.is_dir():
                sys.exit(f"error: --model-repository {repository} is not a folder")
            for folder in sorted(path for path in repository.iterdir() if path.is_dir()):
                config = folder / "config.pbtxt"
                found = re.search(r"max_batch_size\s*:\s*(\d+)",
                                  config.read_text()) if config.is_file() else None
                self.models[folder.name] = Model(folder.name, int(found[1]) if found else 0,
                                                 args.instances)
        for name in args.model:
            self.models.setdefault(name, Model(name, 0, args.instances))
        for model in self.models.values():
            model.loaded = not self.explicit or model.name in args.load_model \
                or "*" in args.load_model
        missing = [name for name in args.load_model if name != "*" and name not in self.models]
        if missing:
            sys.exit(f"error: --load-model {missing[0]} is not in the model repository")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        routes = [web.get("/v2/health/live", self.live), web.get("/v2/health/ready", self.live),
                  web.get("/v2", self.server_metadata),
                  web.post("/v2/repository/index", self.index),
                  web.post("/v2/repository/models/{model}/load", self.load),
                  web.post("/v2/repository/models/{model}/unload", self.unload)]
        for model in ("/v2/models/{model}", "/v2/models/{model}/versions/{version:[0-9]+}"):
            routes += [web.get(model, self.model_metadata),
                       web.get(model + "/ready", self.model_ready),
                       web.get(model + "/config", self.model_config),
                       web.post(model + "/infer", self.infer)]
        app.add_routes(routes)
        return app

    def _model(self, request: web.Request, loaded: bool = True) -> Model | web.Response:
        model = self.models.get(request.match_info["model"])
        if model is None or request.match_info.get("version") not in (None, "1"):
            return _error(404, f"Request for unknown model: '{request.match_info['model']}' "
                               "is not found")
        if loaded and not model.loaded:
            return _error(400, f"Request for unknown model: '{model.name}' is not ready")
        return model

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response({"name": "hpcbench-kserve-example", "version": __version__,
                                  "extensions": ["model_repository", "model_configuration"]})

    async def model_metadata(self, request: web.Request) -> web.Response:
        model = self._model(request)
        return model if isinstance(model, web.Response) else web.json_response(model.metadata())

    async def model_ready(self, request: web.Request) -> web.Response:
        model = self._model(request)
        return model if isinstance(model, web.Response) else web.Response(status=200)

    async def model_config(self, request: web.Request) -> web.Response:
        model = self._model(request)
        return model if isinstance(model, web.Response) else web.json_response(model.config)

    async def infer(self, request: web.Request) -> web.Response:
        model = self._model(request)
        if isinstance(model, web.Response):
            return model
        try:
            body = await request.json(loads=json.loads)
            if not isinstance(body, dict):
                raise ValueError("the request body must be a JSON object")
            answer = compute(model, body)
        except ValueError as error:     # json.JSONDecodeError is one
            return _error(400, str(error))
        async with model.slots:
            if self.delay:
                await asyncio.sleep(self.delay)
            model.inferences += 1
        return web.json_response(answer)

    async def index(self, request: web.Request) -> web.Response:
        return web.json_response([{"name": model.name, "version": "1",
                                   "state": "READY" if model.loaded else "UNAVAILABLE"}
                                  for model in self.models.values()])

    async def load(self, request: web.Request) -> web.Response:
        if not self.explicit:
            return _error(400, "explicit model load / unload is not allowed if polling is "
                               "enabled")
        model = self._model(request, loaded=False)
        if isinstance(model, web.Response):
            return model
        try:
            body = await request.json() if request.can_read_body else {}
            config = ((body or {}).get("parameters") or {}).get("config")
            if config is not None:
                model.apply(json.loads(config))
        except (ValueError, AttributeError, TypeError) as error:
            return _error(400, f"failed to load '{model.name}': {error}")
        model.loaded = True
        return web.Response(status=200)

    async def unload(self, request: web.Request) -> web.Response:
        if not self.explicit:
            return _error(400, "explicit model load / unload is not allowed if polling is "
                               "enabled")
        model = self._model(request, loaded=False)
        if isinstance(model, web.Response):
            return model
        model.loaded = False
        return web.Response(status=200)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hpcbench_kserve.server",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--http-address", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--model", action="append", default=[],
                        help="a model to serve (repeatable)")
    parser.add_argument("--model-repository", help="a folder with a subfolder per model")
    parser.add_argument("--model-control-mode", choices=("none", "explicit"), default="none")
    parser.add_argument("--load-model", action="append", default=[],
                        help="explicit mode: load this model at start (repeatable; * = all)")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds each inference takes")
    parser.add_argument("--instances", type=int, default=1,
                        help="inferences of one model at a time (instance_group count)")
    for flag in IGNORED:
        parser.add_argument(flag, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    ignored = [f"{flag} {getattr(args, flag[2:].replace('-', '_'))}" for flag in IGNORED
               if getattr(args, flag[2:].replace("-", "_")) is not None]
    if args.delay < 0 or args.instances < 1:
        sys.exit("error: --delay must be >= 0 and --instances >= 1")

    async def serve() -> None:
        server = Server(args)
        if not server.models:
            sys.exit("error: no model: give --model NAME or --model-repository DIR")
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.http_address, args.http_port).start()
        print(f"serving {', '.join(server.models)} on http://{args.http_address}:"
              f"{args.http_port}" + (f" (ignored: {' '.join(ignored)})" if ignored else ""),
              flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
