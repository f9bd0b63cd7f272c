"""The per-session control token: created with `secrets`, stored 0600, checked on every call.

The coordinator writes the token to `<run_dir>/control.token` (created with mode 0600 so no
other user can read it, even for an instant) and requires it on every Control and Agent call in
the `authorization: Bearer TOKEN` metadata. The comparison uses `hmac.compare_digest` so its
time does not reveal how much of a guess was right. grpc.health.v1 and reflection stay open:
they reveal nothing about sessions and cluster health probes cannot carry a token.
"""
from __future__ import annotations

import hmac
import os
import secrets
import threading
from pathlib import Path

import grpc

TOKEN_FILE = "control.token"
METADATA_KEY = "authorization"
# Methods callable without a token (prefixes of the full method name).
OPEN_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                "/grpc.reflection.v1.ServerReflection/")


def create_token(run_dir: Path) -> str:
    """Make a fresh token and write it to run_dir/control.token with mode 0600."""
    token = secrets.token_urlsafe(32)
    write_token(Path(run_dir) / TOKEN_FILE, token)
    return token


def write_token(path: Path, token: str) -> None:
    """Write a token file that is never readable by others, not even while being written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    os.replace(temp, path)


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
        if method.startswith(OPEN_METHODS):
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
