"""The interface of an executor wire protocol: how requests are phrased and answers are read.

Every API the executor speaks is one `WireProtocol` object, found by name in the protocol
registry (executor/protocol_registry.py): the built-ins (executor/protocols.py, executor/resp.py)
and those a plugin registers in the `hpcbench.protocols` entry-point group, alike.

A protocol is stateless and shared by every request of a trial; what one request has read so
far lives on its `Attempt` (executor/attempt.py), which the protocol tells what it found:
- `attempt.chunk(now)` counts one content chunk (a token event) at `now`, the kernel's receive
  stamp of the bytes that carried it; the first is the first token (TTFT), every later one
  adds an inter-token gap (ITL);
- `attempt.server_counts(prompt_tokens, output_tokens)` records the server's own token counts,
  which take precedence over counted chunks;
- `attempt.error = ErrorClass.X` classifies a failure the bytes reveal (PROTOCOL for a malformed
  answer, HTTP_STATUS for an error the server states in a successful response). Transport
  failures, timeouts and HTTP statuses are classified by the executor, not the protocol.
`feed` and `finish` are on the per-token path: they must not block and should not allocate more
than they need.

Two kinds exist:
- `HttpProtocol`: a JSON body POSTed to `path` over the executor's HTTP/1.1 client, the answer
  streamed (`feed` per read) or whole (`finish` once);
- `FramedProtocol`: whole requests the protocol encodes itself (`requests`), over a connection
  class that frames one answer per request (RESP: executor/resp.py).
"""
from __future__ import annotations

from hpcbench.executor.http import HttpConnection


class WireProtocol:
    """What every protocol declares. `name` is its `workload.api` value."""

    name: str = ""
    scheme: str = "http"      # the URL scheme of its targets (`workload.targets`, endpoints)
    batches: bool = False     # can one request carry several prompts (`workload.batch` > 1)

    def feed(self, attempt, data: bytes, now: int) -> None:
        """Bytes of a streamed answer as they arrive (`now`: their receive time, ns)."""
        raise NotImplementedError

    def finish(self, attempt, body: bytes, now: int) -> None:
        """A whole answer at once (a non-streamed request, or a framed protocol's reply)."""
        raise NotImplementedError


class HttpProtocol(WireProtocol):
    """An API spoken as HTTP POSTs of JSON bodies."""

    path: str = "/"

    def body(self, model: str, prompt: str | list[str], max_tokens: int | None, stream: bool,
             ignore_eos: bool) -> dict:
        """The JSON body of one request (a list of prompts only when `batches` is true)."""
        raise NotImplementedError


class FramedProtocol(WireProtocol):
    """An API that is not HTTP: the protocol encodes every request and names the connection
    class that frames one reply per request (a subclass of executor/http.py's HttpConnection,
    so pooling, timeouts and receive stamps stay the executor's)."""

    connection_class: type[HttpConnection] = HttpConnection

    def requests(self, prompts: list, executor_index: int) -> list[bytes]:
        """One encoded request per prompt of the dataset, sent in turn."""
        raise NotImplementedError
