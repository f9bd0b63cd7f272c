"""Plugin classes of every shape, for registry tests that load them through real EntryPoints."""
from hpcbench.executor.wire import HttpProtocol, HttpRequest
from hpcbench.servers.plugin import HttpService


class ForgotLaunch(HttpService):
    name = "forgot-launch"


class NotAPlugin:
    name = "duck"

    def launch(self, ctx):
        return None


class EchoProtocol(HttpProtocol):
    def request(self, ask):
        return HttpRequest("/echo", {"text": ask.prompt})

    def feed(self, attempt, data, now):
        attempt.chunk(now)

    def finish(self, attempt, body, now):
        attempt.chunk(now)


class NotAProtocol:
    path = "/x"


class GetWithHeaders(HttpProtocol):
    """GET of a path that varies per prompt, with headers of its own and a configured token;
    every answer whole ({"ok": true} is a success, anything else the server's failure)."""

    streams = False

    def check_config(self, config):
        from hpcbench.common.errors import config_error

        unknown = set(config) - {"token"}
        if unknown:
            raise config_error(f"workload.api_config.{sorted(unknown)[0]}: not a key of "
                               "get-with-headers", ["fix: the only key is token"])
        return {"token": "t0", **config}

    def request(self, ask):
        return HttpRequest(f"/items/{ask.index % 3}?model={ask.model}", None, "GET",
                           {"Authorization": f"Bearer {self.config['token']}",
                            "Accept": "application/json"})

    def finish(self, attempt, body, now):
        import json

        from hpcbench.proto.samples import ErrorClass

        if json.loads(body) == {"ok": True}:
            attempt.chunk(now)
        else:
            attempt.error = ErrorClass.HTTP_STATUS


class WholeStream(HttpProtocol):
    """A stream of `tok` lines that is only good when it ends with an `END` line: judged in
    `end`, once the whole stream is in."""

    def request(self, ask):
        return HttpRequest("/stream", {"prompt": ask.prompt})

    def feed(self, attempt, data, now):
        attempt.buffer += data
        attempt.chunk_times.extend([now] * data.count(b"tok\n"))

    def end(self, attempt, now):
        from hpcbench.proto.samples import ErrorClass

        if not attempt.buffer.endswith(b"END\n"):
            attempt.error = ErrorClass.PROTOCOL


class RawBytes(HttpProtocol):
    """A body of bytes with its own content type."""

    def request(self, ask):
        return HttpRequest("/raw", ask.prompt.encode(), "PUT",
                           {"Content-Type": "application/x-tokens"})

    def finish(self, attempt, body, now):
        attempt.chunk(now)


class BadRequests(HttpProtocol):
    """Builds what `workload.api_config.kind` says: each a request the executor must refuse."""

    def check_config(self, config):
        return dict(config)

    def request(self, ask):
        kind = self.config["kind"]
        if kind == "head":
            return HttpRequest("/x", None, "HEAD")
        if kind == "path":
            return HttpRequest(f"/models/{ask.model}/infer")
        if kind == "host":
            return HttpRequest("/x", {}, headers={"Host": "elsewhere"})
        if kind == "newline":
            return HttpRequest("/x", {}, headers={"X-Note": "a\r\nInjected: 1"})
        if kind == "dict":
            return {"path": "/x"}
        if kind == "nan":
            return HttpRequest("/x", {"value": float("nan")})
        if kind == "bytes-with-extras":
            return HttpRequest("/x", b"raw")
        raise RuntimeError("a bug in the plugin")


class PickyService(HttpService):
    """A service that judges the values of its service_config (`config_problems`)."""

    name = "picky"

    def launch(self, ctx):
        from hpcbench.servers.plugin import LaunchSpec

        return LaunchSpec(["picky-server"])

    def config_problems(self, config):
        dtype = config.get("dtype", "float16")
        if dtype not in ("float16", "bfloat16"):
            return [("dtype", dtype, "a type the picky server loads: float16 or bfloat16")]
        return []


class BuggyCheckService(PickyService):
    """A plugin whose config_problems itself fails (a bug in someone else's plugin)."""

    name = "buggy-check"

    def config_problems(self, config):
        return config["missing"]
