"""The control plane's TLS (common/tls.py): a per-session certificate that clients pin."""
from __future__ import annotations

import os
import stat

import pytest

from hpcbench.common import tls
from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.control.client import ControlClient, Target, locate
from hpcbench.coordinator.control.server import Coordinator


@pytest.fixture
def tls_coordinator(tmp_path):
    """A coordinator listening on every interface, so its port speaks TLS."""
    coordinator = Coordinator(tmp_path / "run", host="127.0.0.1", bind="0.0.0.0").start()
    try:
        yield coordinator
    finally:
        coordinator.stop(grace_s=0)


def test_off_loopback_the_port_speaks_tls_with_a_private_key(tls_coordinator, tmp_path):
    assert tls_coordinator.tls
    key = tmp_path / "run" / tls.KEY_FILE
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    with ControlClient(locate(run_dir=tmp_path / "run")) as client:   # reads control.crt
        assert list(client.list().sessions) == []


def test_a_client_without_the_sessions_certificate_gets_nothing(tls_coordinator, tmp_path):
    token = tls_coordinator.token
    plain = Target(address=tls_coordinator.address, token=token)
    with pytest.raises(HpcbenchError) as refused, ControlClient(plain, timeout_s=5) as client:
        client.list()
    assert refused.value.code == "E008"
    other_cert, _ = tls.create_identity(tmp_path / "elsewhere")       # another session's
    pinned_wrong = Target(address=tls_coordinator.address, token=token, certificate=other_cert)
    with pytest.raises(HpcbenchError) as mistrusted, \
            ControlClient(pinned_wrong, timeout_s=5) as client:
        client.list()
    assert mistrusted.value.code == "E008"


def test_the_token_is_never_sent_in_clear_text_off_loopback():
    with pytest.raises(HpcbenchError) as refused:
        tls.channel("10.1.2.3:50051", None)
    assert refused.value.code == "E006" and "--tls-cert" in refused.value.render()
    tls.channel("127.0.0.1:50051", None).close()    # loopback: plain is fine
