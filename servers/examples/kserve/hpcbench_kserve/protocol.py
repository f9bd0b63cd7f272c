"""api "kserve-v2": the client side of the KServe v2 / Triton JSON inference protocol.

Every prompt of the dataset becomes one `POST /v2/models/{model}[/versions/{v}]/infer` whose
input tensors are filled from the prompt (see `tensor_data`); the answer is read whole
(inference answers are not streamed: `streams` is false), so TTFT is the response time and
every good answer counts one "token".

Classification, beyond what the executor does itself (connection failures, timeouts, non-2xx
statuses such as 400 for a bad input or 404 for an unknown model):
- PROTOCOL: the body is not JSON, not an object, has no `outputs` list, an output lacks its
  name, datatype, shape or data, its data does not hold shape's product of elements, or an
  output the request asked for is missing;
- HTTP_STATUS: a 200 answer whose object carries `error` (the server states a failure).

`workload.api_config` (checked by `check_config`, E006 naming the key otherwise):
    inputs:  [{name: INPUT0, datatype: BYTES, shape: [1]}]   # the default
    outputs: [OUTPUT0]          # ask for these by name; every answer must carry them
    version: "1"                # a model version; default: the server's choice
"""
from __future__ import annotations

import math
from urllib.parse import quote

import orjson

from hpcbench.common.errors import config_error
from hpcbench.executor.wire import HttpProtocol, HttpRequest, RequestInput
from hpcbench.proto.samples import ErrorClass

DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BF16", "BYTES")
# elements of all input tensors of one request: a JSON request of that many numbers is ~0.5 MB,
# and the executor builds one request per prompt of the dataset before the trial
MAX_ELEMENTS = 65536
MAX_TENSORS = 64
DEFAULT_INPUTS = ({"name": "INPUT0", "datatype": "BYTES", "shape": [1]},)
WHERE = "workload.api_config"
_SHAPE_ERRORS = (ValueError, TypeError, KeyError, AttributeError)


def tensor_data(datatype: str, count: int, text: str) -> list:
    """`count` elements for a tensor of `datatype`, made from the prompt's text: the text
    itself for BYTES, else its UTF-8 bytes in turn (integers: byte mod 128, which every
    integer type holds; floats: byte / 4, exact in every float type; BOOL: odd bytes)."""
    if datatype == "BYTES":
        return [text] * count
    raw = text.encode() or b"\0"
    values = (raw * (count // len(raw) + 1))[:count]
    if datatype == "BOOL":
        return [byte % 2 == 1 for byte in values]
    if datatype.startswith(("FP", "BF")):
        return [byte / 4 for byte in values]
    return [byte % 128 for byte in values]


def _leaves(data) -> int:
    """Elements of a tensor's data, which KServe allows flat or nested row-major."""
    if isinstance(data, list):
        return sum(_leaves(item) for item in data)
    if isinstance(data, (int, float, str, bool)):
        return 1
    raise TypeError(f"tensor element {data!r}")


class KServeV2Protocol(HttpProtocol):
    streams = False

    def check_config(self, config: dict) -> dict:
        unknown = sorted(set(config) - {"inputs", "outputs", "version"})
        if unknown:
            raise config_error(f"{WHERE}.{unknown[0]}: not a kserve-v2 key",
                               ["fix: the keys are inputs, outputs and version"])
        inputs = [self._input(tensor, index)
                  for index, tensor in enumerate(self._list(config, "inputs",
                                                            list(DEFAULT_INPUTS)))]
        if not inputs:
            raise config_error(f"{WHERE}.inputs is empty", ["fix: give at least one tensor"])
        if len({tensor["name"] for tensor in inputs}) != len(inputs):
            raise config_error(f"{WHERE}.inputs: two tensors share a name",
                               ["fix: give each input its own name"])
        elements = sum(math.prod(tensor["shape"]) for tensor in inputs)
        if elements > MAX_ELEMENTS:
            raise config_error(f"{WHERE}.inputs: {elements:,} elements per request; at most "
                               f"{MAX_ELEMENTS:,}",
                               ["fix: use smaller shapes (JSON tensors are meant for small "
                                "inputs; the binary tensor extension is not implemented)"])
        outputs = self._list(config, "outputs", [])
        for index, name in enumerate(outputs):
            if not isinstance(name, str) or not name:
                raise config_error(f"{WHERE}.outputs[{index}]={name!r}: expected a tensor name")
        version = config.get("version")
        if version is not None and (not isinstance(version, (str, int)) or
                                    isinstance(version, bool) or not str(version).isdigit()):
            raise config_error(f"{WHERE}.version={version!r}: expected a version number "
                               "such as \"1\"")
        return {"inputs": inputs, "outputs": list(outputs),
                "version": None if version is None else str(version)}

    @staticmethod
    def _list(config: dict, key: str, default: list) -> list:
        value = config.get(key, default)
        if not isinstance(value, list) or len(value) > MAX_TENSORS:
            raise config_error(f"{WHERE}.{key}: expected a list of at most {MAX_TENSORS}")
        return value

    @staticmethod
    def _input(tensor: object, index: int) -> dict:
        where = f"{WHERE}.inputs[{index}]"
        if not isinstance(tensor, dict) or set(tensor) - {"name", "datatype", "shape"}:
            raise config_error(f"{where}={tensor!r}: expected {{name, datatype, shape}}",
                               ["fix: e.g. {name: INPUT0, datatype: INT32, shape: [1, 16]}"])
        name, datatype = tensor.get("name"), tensor.get("datatype", "BYTES")
        shape = tensor.get("shape", [1])
        if not isinstance(name, str) or not name:
            raise config_error(f"{where}.name={name!r}: expected the model's input name")
        if datatype not in DATATYPES:
            raise config_error(f"{where}.datatype={datatype!r} is not a KServe v2 datatype",
                               [f"fix: use one of {', '.join(DATATYPES)}"])
        if not isinstance(shape, list) or not shape or not all(
                isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= MAX_ELEMENTS
                for size in shape):
            raise config_error(f"{where}.shape={shape!r}: expected a list of sizes >= 1",
                               ["fix: give the full shape, batch dimension included (no -1)"])
        return {"name": name, "datatype": datatype, "shape": list(shape)}

    def request(self, ask: RequestInput) -> HttpRequest:
        config = self.config or self.check_config({})
        text = ask.prompt if isinstance(ask.prompt, str) else " ".join(ask.prompt)
        body = {"id": f"{ask.executor_index}-{ask.index}",
                "inputs": [{**tensor, "data": tensor_data(tensor["datatype"],
                                                          math.prod(tensor["shape"]), text)}
                           for tensor in config["inputs"]]}
        if config["outputs"]:
            body["outputs"] = [{"name": name} for name in config["outputs"]]
        model = quote(ask.model, safe="")
        version = f"/versions/{config['version']}" if config["version"] else ""
        return HttpRequest(f"/v2/models/{model}{version}/infer", body)

    def finish(self, attempt, body: bytes, now: int) -> None:
        try:
            answer = orjson.loads(body)
            if not isinstance(answer, dict):
                raise ValueError("not a JSON object")
            if "error" in answer:
                attempt.error = ErrorClass.HTTP_STATUS
                return
            names = set()
            for output in answer["outputs"]:
                if not isinstance(output["name"], str) or output["datatype"] not in DATATYPES:
                    raise ValueError("output name or datatype")
                if _leaves(output["data"]) != math.prod(output["shape"]):
                    raise ValueError("output data does not fill its shape")
                names.add(output["name"])
        except _SHAPE_ERRORS:
            attempt.error = ErrorClass.PROTOCOL
            return
        if any(name not in names for name in self.config.get("outputs", ())):
            attempt.error = ErrorClass.PROTOCOL
            return
        attempt.chunk(now)
