"""The `hpcbench` verb tree: every verb has --help, and unknown verbs fail with usage."""

import pytest

from hpcbench.coordinator.cli.main import VERBS, main


@pytest.mark.parametrize("verb", [name for name, _ in VERBS])
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    assert f"hpcbench {verb}" in capsys.readouterr().out


def test_unknown_verb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_malformed_bus_endpoint_is_e006_not_a_traceback(capsys):
    assert main(["watch", "--bus", "garbage", "--idle-timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert "error E006: 'garbage' is not a ZeroMQ endpoint" in err and "Traceback" not in err


def test_an_address_that_is_not_this_nodes_cannot_be_listened_on():
    import zmq

    from hpcbench.common import sockets
    from hpcbench.common.errors import HpcbenchError

    with pytest.raises(HpcbenchError) as refused:
        sockets.bind(zmq.PULL, "tcp://192.0.2.1:0", hwm=1)     # TEST-NET-1: never local
    assert refused.value.code == "E008" and "security.bind_address" in refused.value.render()
