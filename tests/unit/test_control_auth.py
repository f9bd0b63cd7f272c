"""Control server: token auth on every call, open health + reflection, token file 0600."""
import stat

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hpcbench.common.auth import TOKEN_FILE, call_metadata
from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.control.server import Coordinator
from hpcbench.proto import control_v1_pb2 as pb
from hpcbench.proto import control_v1_pb2_grpc as pb_grpc


@pytest.fixture
def coordinator(tmp_path):
    server = Coordinator(tmp_path / "run").start()
    try:
        yield server
    finally:
        server.stop(grace_s=0)


@pytest.fixture
def channel(coordinator):
    with grpc.insecure_channel(coordinator.address) as channel:
        yield channel


def test_token_file_is_private_and_address_file_names_the_port(coordinator):
    mode = stat.S_IMODE((coordinator.run_dir / TOKEN_FILE).stat().st_mode)
    assert mode == 0o600
    assert (coordinator.run_dir / TOKEN_FILE).read_text().strip() == coordinator.token
    assert f'"control": "127.0.0.1:{coordinator.port}"' in \
        (coordinator.run_dir / "coordinator.json").read_text()


@pytest.mark.parametrize("metadata", [None, call_metadata("not-the-token"),
                                      (("authorization", "Bearer"),)],
                         ids=["missing", "wrong", "empty"])
def test_control_calls_without_the_right_token_are_unauthenticated(channel, metadata):
    control = pb_grpc.ControlStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        control.List(pb.ListRequest(), metadata=metadata, timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "control token" in caught.value.details()
    with pytest.raises(grpc.RpcError) as streamed:
        list(control.Watch(pb.WatchRequest(), metadata=metadata, timeout=5))
    assert streamed.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_agent_calls_need_the_token_too(channel):
    agent = pb_grpc.AgentStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        agent.Register(pb.RegisterRequest(role=pb.EXECUTOR), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_right_token_is_accepted(coordinator, channel):
    control = pb_grpc.ControlStub(channel)
    metadata = call_metadata(coordinator.token)
    assert list(control.List(pb.ListRequest(), metadata=metadata, timeout=5).sessions) == []
    with pytest.raises(grpc.RpcError) as caught:
        control.Status(pb.SessionRef(session_id="nope"), metadata=metadata, timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as empty:
        control.StartSession(pb.StartSessionRequest(), metadata=metadata, timeout=5)
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_check_answers_without_a_token_and_reflection_only_with_it(coordinator, channel):
    """A cluster health probe cannot carry a token, and Check answers at once; reflection and
    health Watch hold a server thread as long as the caller likes, so they need the token
    (a tokenless flood of them starved token holders' calls)."""
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "hpcbench.control.v1.Control", "hpcbench.control.v1.Agent"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = [reflection_pb2.ServerReflectionRequest(list_services="")]
    with pytest.raises(grpc.RpcError) as refused:
        list(reflection.ServerReflectionInfo(iter(request), timeout=5))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as watch_refused:
        next(health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5))
    assert watch_refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    replies = reflection.ServerReflectionInfo(iter(request), timeout=5,
                                              metadata=call_metadata(coordinator.token))
    names = {service.name for reply in replies
             for service in reply.list_services_response.service}
    assert {"hpcbench.control.v1.Control", "hpcbench.control.v1.Agent",
            "grpc.health.v1.Health"} <= names


def test_a_bad_recipe_is_refused_by_start_session_naming_the_field(coordinator, channel):
    control = pb_grpc.ControlStub(channel)
    metadata = call_metadata(coordinator.token)
    bad = "scenario: x\nworkload: {service: simulator, model: m, duration: soon}\n"
    with pytest.raises(grpc.RpcError) as caught:
        control.StartSession(pb.StartSessionRequest(recipe_yaml=bad), metadata=metadata,
                             timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "E006" in caught.value.details() and "workload.duration" in caught.value.details()
    with pytest.raises(grpc.RpcError) as missing:
        control.StartSession(pb.StartSessionRequest(recipe_path="/nonexistent/recipe.yaml"),
                             metadata=metadata, timeout=10)
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(control.List(pb.ListRequest(), metadata=metadata, timeout=5).sessions) == []


def test_tokens_are_compared_in_constant_time_and_refusals_counted(coordinator, channel,
                                                                  monkeypatch):
    """Every presented token goes through hmac.compare_digest (its time does not depend on how
    much of a guess matches); each refusal is counted, the right token is not."""
    from hpcbench.common import auth
    compared = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest",
                        lambda given, expected: compared.append((given, expected))
                        or real(given, expected))
    control = pb_grpc.ControlStub(channel)
    with pytest.raises(grpc.RpcError):
        control.List(pb.ListRequest(), metadata=call_metadata("guess"), timeout=5)
    assert coordinator.token_check.rejected == 1
    control.List(pb.ListRequest(), metadata=call_metadata(coordinator.token), timeout=5)
    assert coordinator.token_check.rejected == 1
    expected = f"Bearer {coordinator.token}".encode()
    assert compared == [(b"Bearer guess", expected), (expected, expected)]


def test_a_daemon_runs_a_bounded_number_of_sessions_and_forgets_old_ones(coordinator):
    """A long-lived hpcbench-coordinator must not grow with every session it ran."""
    from hpcbench.coordinator.control import server

    class Known:
        """What the coordinator reads of a session: finished or not, its id and registry."""

        def __init__(self, name, finished):
            self.session_id, self.finished = name, finished
            self.registry = type("Registry", (), {"session_id": name})()

        def stop(self, reason=""):
            pass

        def wait(self, timeout_s=None):
            return True

    for number in range(server.MAX_KEPT_SESSIONS + 20):
        old = Known(f"old-{number}", finished=True)
        coordinator.sessions[old.session_id] = old
        coordinator.agents.add_registry(old.registry)
    coordinator._forget_old_sessions()
    assert len(coordinator.sessions) == server.MAX_KEPT_SESSIONS - 1
    assert "old-0" not in coordinator.sessions and f"old-{server.MAX_KEPT_SESSIONS + 19}" in \
        coordinator.sessions
    for number in range(server.MAX_RUNNING_SESSIONS):
        coordinator.sessions[f"running-{number}"] = Known(f"running-{number}", finished=False)
    with pytest.raises(HpcbenchError) as refused:
        coordinator.start_session(recipe_text="scenario: x\nworkload: {service: simulator, "
                                              "model: m}\n")
    assert refused.value.code == "E005" and "already runs" in refused.value.render()
