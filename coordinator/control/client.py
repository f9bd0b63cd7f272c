"""How the CLI (and any Python tool) finds a running session and talks to its coordinator.

A coordinator leaves `coordinator.json` (control address, bus endpoint, session id, whether the
control port speaks TLS), `control.token` and, with TLS, `control.crt` in the session's run
directory, results/<scenario>/<session>/. `locate()` turns what the user typed (--run-dir,
--session, or nothing: the newest session) into a `Target`; `ControlClient` is the Control stub
with the token attached to every call, over TLS pinned to the session's certificate when the
coordinator is not on loopback.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc

from hpcbench.common import tls
from hpcbench.common.auth import TOKEN_FILE, call_metadata, read_token
from hpcbench.common.errors import HpcbenchError, config_error
from hpcbench.common.ids import check_id
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.proto import control_v1_pb2_grpc as pb_grpc

ADDRESS_FILE = "coordinator.json"


@dataclass
class Target:
    address: str
    token: str
    session_id: str = ""
    bus_endpoint: str = ""
    run_dir: Path | None = None
    certificate: bytes | None = None   # the session's control.crt when it speaks TLS


def add_target_arguments(parser) -> None:
    """The flags every verb that talks to a running session shares."""
    parser.add_argument("--run-dir", help="the session's directory (results/SCENARIO/SESSION)")
    parser.add_argument("--session", help="session id (looked up under --results-dir)")
    parser.add_argument("--results-dir", default="results",
                        help="where sessions are (default: results)")
    parser.add_argument("--address", help="coordinator HOST:PORT (with --token-file)")
    parser.add_argument("--token-file", help="the session's control.token")
    parser.add_argument("--tls-cert", help="with --address: the session's control.crt, for a "
                                           "coordinator that is not on loopback")


def target_from_args(args) -> Target:
    return locate(run_dir=args.run_dir, session=args.session, results_dir=args.results_dir,
                  address=args.address, token_file=args.token_file,
                  tls_cert=getattr(args, "tls_cert", None))


def locate(run_dir=None, session=None, results_dir="results", address=None,
           token_file=None, tls_cert=None) -> Target:
    """Resolve a Target from a run dir, a session id, an address + token, or the newest session."""
    if session:   # it is looked up as a directory under results_dir
        check_id(session, "--session id")
    if address:
        if not token_file:
            raise config_error("--address needs --token-file (the session's control.token)")
        return Target(address=address, token=read_token(Path(token_file)), session_id=session or "",
                      certificate=tls.read_certificate(Path(tls_cert)) if tls_cert else None)
    if run_dir is None:
        run_dir = _find_run_dir(Path(results_dir), session)
    run_dir = Path(run_dir)
    try:
        info = json.loads((run_dir / ADDRESS_FILE).read_text())
    except (OSError, ValueError) as error:
        raise config_error(f"no running coordinator recorded in {run_dir}: {error}",
                           ["fix: pass --run-dir of a session started by `hpcbench run`, or "
                            "--address HOST:PORT --token-file FILE"]) from None
    fields = info if isinstance(info, dict) else {}
    address, session_id, bus = (fields.get(key) if isinstance(fields.get(key), str) else ""
                                for key in ("control", "session", "bus"))
    if not address:
        raise config_error(f"{run_dir / ADDRESS_FILE} does not name a coordinator address",
                           ["fix: pass --run-dir of a session started by `hpcbench run`, or "
                            "--address HOST:PORT --token-file FILE"])
    token = read_token(Path(token_file) if token_file else run_dir / TOKEN_FILE)
    certificate = tls.read_certificate(run_dir) if fields.get("tls") is True else None
    return Target(address=address, token=token, session_id=session_id, bus_endpoint=bus,
                  run_dir=run_dir, certificate=certificate)


def _find_run_dir(results_dir: Path, session: str | None) -> Path:
    pattern = f"*/{session}/{ADDRESS_FILE}" if session else f"*/*/{ADDRESS_FILE}"
    found = sorted(results_dir.glob(pattern), key=lambda path: path.stat().st_mtime)
    if not found:
        what = f"session {session!r}" if session else "any session"
        raise config_error(f"cannot find {what} under {results_dir}/",
                           ["fix: pass --run-dir DIR or --results-dir where `hpcbench run` "
                            "wrote its results"])
    return found[-1].parent


class ControlClient:
    """The Control API with the token on every call; errors become HpcbenchError."""

    def __init__(self, target: Target, timeout_s: float = 10.0):
        self.target = target
        self.timeout_s = timeout_s
        self._channel = tls.channel(target.address, target.certificate)
        self._stub = pb_grpc.ControlStub(self._channel)
        self._metadata = call_metadata(target.token)

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc) -> None:
        self._channel.close()

    def status(self, session_id: str | None = None) -> pb.SessionStatus:
        return self._call("Status", pb.SessionRef(session_id=self._id(session_id)))

    def stop(self, session_id: str | None = None, reason: str = "") -> pb.SessionStatus:
        return self._call("Stop", pb.StopRequest(session_id=self._id(session_id), reason=reason))

    def list(self) -> pb.ListReply:
        return self._call("List", pb.ListRequest())

    def results(self, session_id: str | None = None) -> pb.ResultsReply:
        return self._call("Results", pb.SessionRef(session_id=self._id(session_id)))

    def start(self, recipe_yaml: str | None = None, recipe_path: str | None = None,
              session_id: str = "") -> pb.SessionStatus:
        request = pb.StartSessionRequest(session_id=session_id)
        if recipe_yaml is not None:
            request.recipe_yaml = recipe_yaml
        else:
            request.recipe_path = str(recipe_path)
        return self._call("StartSession", request)

    def watch(self, session_id: str | None = None, rate_hz: float = 10.0):
        stream = self._stub.Watch(pb.WatchRequest(session_id=self._id(session_id),
                                                  max_rate_hz=rate_hz), metadata=self._metadata)
        try:
            yield from stream
        except grpc.RpcError as error:
            raise _as_error(error, self.target.address) from None

    def _id(self, session_id: str | None) -> str:
        return session_id if session_id is not None else self.target.session_id

    def _call(self, method: str, request):
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata,
                                               timeout=self.timeout_s)
        except grpc.RpcError as error:
            raise _as_error(error, self.target.address) from None


def _as_error(error: grpc.RpcError, address: str) -> HpcbenchError:
    code = error.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return HpcbenchError("E008", f"cannot reach the coordinator at {address}: {code.name}",
                             ("the session may have ended; `hpcbench report` reads its results",
                              "a coordinator off loopback speaks TLS: give its --run-dir, or "
                              "--tls-cert with --address"))
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return HpcbenchError("E006", f"the coordinator at {address} rejected the token",
                             (error.details() or "", "fix: use that session's control.token"))
    return HpcbenchError("E006", f"{code.name}: {error.details()}")
