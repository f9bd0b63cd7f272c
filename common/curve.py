"""ZeroMQ CURVE for the sample and bus sockets, for clusters shared with other users.

Without it anyone who can reach the coordinator's node may push sample batches into a run or
read its metrics bus. Wherever other machines reach those sockets (Slurm, a bind_address; or
recipe `security: {curve: true}`) the coordinator makes one key set per session and writes
it to `<run_dir>/curve.keys` (mode 0600, like control.token): the server key pair the sample
PULL and bus PUB sockets serve with, and a client key pair that executors, monitors and bus
subscribers connect with. A peer that does not hold the file cannot
complete the CURVE handshake (it needs the server's public key), so a plain-text or wrongly
keyed PUSH never delivers a message, and everything on the wire is encrypted.

The sockets apply the keys in common/sockets.py (`bind(..., curve=keys)` serves the server
key, `connect(..., curve=keys)` needs it).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import zmq

from hpcbench.common.errors import config_error
from hpcbench.common.files import write_private

KEYS_FILE = "curve.keys"


@dataclass(frozen=True)
class CurveKeys:
    """Z85-encoded CURVE keys of one session."""

    server_public: str
    server_secret: str
    client_public: str
    client_secret: str


def create_keys(run_dir: Path) -> CurveKeys:
    """Make a fresh key set and store it in run_dir/curve.keys (mode 0600)."""
    if not zmq.has("curve"):
        raise config_error("security.curve is on but this libzmq was built without CURVE",
                           ["fix: install pyzmq wheels (they bundle libsodium) or set "
                            "security.curve: false"])
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    keys = CurveKeys(*(key.decode("ascii") for key in (server_public, server_secret,
                                                       client_public, client_secret)))
    write_private(Path(run_dir) / KEYS_FILE, json.dumps(asdict(keys)))
    return keys


def load_keys(path: Path) -> CurveKeys:
    """The key set stored at `path` (a curve.keys file, or a run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / KEYS_FILE
    try:
        return CurveKeys(**json.loads(path.read_text()))
    except OSError as error:
        raise config_error(f"cannot read the CURVE keys {path}: {error.strerror}",
                           ["pass the session's curve.keys (in its run directory)"]) from None
    except (ValueError, TypeError):
        raise config_error(f"{path} is not a CURVE key file written by hpcbench",
                           ["use the curve.keys of the running session"]) from None

