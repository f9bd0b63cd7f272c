"""TLS for the control plane: a per-session certificate that every client pins.

When the coordinator's gRPC port is reachable from other machines (any address but loopback),
the bearer token must not cross the network in clear text. The coordinator then makes a fresh
key and a self-signed certificate for the session (`create_identity`): the key stays in the run
directory (mode 0600, common/files.py), the certificate (`control.crt`, public) is what clients
trust, and nothing else: a client (`channel`) accepts exactly that certificate, so a machine
in the middle cannot answer in the coordinator's place even with a certificate from a public
authority. The certificate names `SERVER_NAME` and clients check that name rather than the
address they dial, so the same certificate works through an SSH tunnel or a NAT.

On loopback the control plane stays plain: loopback traffic is visible only to root, who can
read the token file anyway.
"""
from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import grpc

from hpcbench.common.errors import config_error
from hpcbench.common.files import write_atomic, write_private

CERT_FILE = "control.crt"
KEY_FILE = "control.key"
SERVER_NAME = "hpcbench-coordinator"
# A coordinator (a daemon included) may run longer than a month, and an expired certificate
# would lock its own clients out; the pin, not the expiry, is what protects the session.
VALID_DAYS = 3660


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) can only be reached from this machine."""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_identity(run_dir: Path) -> tuple[bytes, bytes]:
    """A fresh EC P-256 key and a self-signed certificate for SERVER_NAME; writes
    run_dir/control.key (0600) and run_dir/control.crt; returns (certificate, key) in PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    write_private(Path(run_dir) / KEY_FILE, key_pem)
    write_atomic(Path(run_dir) / CERT_FILE, cert_pem)
    return cert_pem, key_pem


def server_credentials(cert_pem: bytes, key_pem: bytes) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(key_pem, cert_pem)])


def read_certificate(path: Path) -> bytes:
    """The session certificate at `path` (a control.crt, or a run directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / CERT_FILE
    try:
        return path.read_bytes()
    except OSError as error:
        raise config_error(f"cannot read the session certificate {path}: {error.strerror}",
                           ["pass the session's control.crt (in its run directory)"]) from None


def channel(address: str, cert_pem: bytes | None) -> grpc.Channel:
    """A channel to the coordinator: TLS trusting exactly `cert_pem` when given; plain only to
    a loopback address (anywhere else the token would cross the network in clear text, to
    whatever answers: E006 naming the fix)."""
    if cert_pem is None:
        host = address.rsplit(":", 1)[0]
        if not is_loopback(host):
            raise config_error(f"the coordinator at {address} is not on this machine: its "
                               "control calls need the session's certificate (TLS)",
                               ["fix: give the session's --run-dir (it holds control.crt), or "
                                "--tls-cert PATH with --address (agents: $HPCBENCH_TLS_CERT)"])
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(root_certificates=cert_pem)
    return grpc.secure_channel(address, credentials,
                               options=(("grpc.ssl_target_name_override", SERVER_NAME),))
