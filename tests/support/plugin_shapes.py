"""Plugin classes of every shape, for registry tests that load them through real EntryPoints."""
from hpcbench.executor.wire import HttpProtocol
from hpcbench.servers.plugin import HttpService


class ForgotLaunch(HttpService):
    name = "forgot-launch"


class NotAPlugin:
    name = "duck"

    def launch(self, ctx):
        return None


class EchoProtocol(HttpProtocol):
    path = "/echo"

    def body(self, model, prompt, max_tokens, stream, ignore_eos):
        return {"text": prompt}

    def feed(self, attempt, data, now):
        attempt.chunk(now)

    def finish(self, attempt, body, now):
        attempt.chunk(now)


class NotAProtocol:
    path = "/x"
