"""The per-session control token: created with `secrets`, stored 0600, checked on every call.

The coordinator writes the token to `<run_dir>/control.token` (common/files.py
`write_private`: mode 0600 from creation, under an unpredictable temporary name, in a directory
only this user can write) and requires it on every call in the `authorization: Bearer TOKEN`
metadata. The comparison uses `hmac.compare_digest` so its time does not reveal how much of a
guess was right. Only grpc.health.v1 Check stays open (cluster health probes cannot carry a
token, and it answers at once); reflection and health Watch, which hold a server thread for as
long as the caller likes, need the token, so a tokenless flood cannot starve token holders.
Off loopback the token only travels inside TLS (common/tls.py).
"""
from __future__ import annotations

import hmac
import secrets
import threading
from pathlib import Path

import grpc

from hpcbench.common.files import write_private

TOKEN_FILE = "control.token"
METADATA_KEY = "authorization"
# Methods callable without a token: unary, answered at once.
OPEN_METHODS = ("/grpc.health.v1.Health/Check",)


def create_token(run_dir: Path) -> str:
    """Make a fresh token and write it to run_dir/control.token (private, see the docstring)."""
    token = secrets.token_urlsafe(32)
    write_token(Path(run_dir) / TOKEN_FILE, token)
    return token


def write_token(path: Path, token: str) -> None:
    """Write a token file that is never readable by others, not even while being written."""
    write_private(path, token + "\n")


def read_token(path: Path) -> str:
    """The token stored at `path` (a token file, or a run directory holding one)."""
    from hpcbench.common.errors import config_error

    path = Path(path)
    if path.is_dir():
        path = path / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except OSError as error:
        raise config_error(f"cannot read the control token {path}: {error.strerror}",
                           ["pass --token-file PATH, or --run-dir of a running session"]) from None
    if not token:
        raise config_error(f"the control token file {path} is empty")
    return token


def call_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Metadata a client sends with every call."""
    return ((METADATA_KEY, f"Bearer {token}"),)


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects every call without the right bearer token with UNAUTHENTICATED, and counts
    them (`rejected`: what a session's status reports, so probing does not go unseen)."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()
        self._lock = threading.Lock()          # calls come on many server threads
        self.rejected = 0

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method in OPEN_METHODS:
            return continuation(handler_call_details)
        presented = dict(handler_call_details.invocation_metadata or ()).get(METADATA_KEY, "")
        if hmac.compare_digest(presented.encode(), self._expected):
            return continuation(handler_call_details)
        reason = "missing" if not presented else "wrong"
        with self._lock:
            self.rejected += 1
        return _reject(continuation(handler_call_details), reason)


def _reject(handler, reason: str):
    """A handler of the same streaming shape that aborts with UNAUTHENTICATED."""
    message = (f"{reason} control token: send 'authorization: Bearer TOKEN' metadata with the "
               f"token from the session's {TOKEN_FILE}")

    def abort(request_or_iterator, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler is None:
        return None
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)
