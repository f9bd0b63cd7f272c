"""Control API from other processes: a daemon coordinator runs a session that the test process
starts, watches (gRPC stream and metrics bus) and stops; the CLI verbs talk to it too."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpcbench.coordinator.bus.publisher import subscribe
from hpcbench.coordinator.control.client import ControlClient, locate
from hpcbench.proto import control_v1_pb2 as pb
from tests.support.sim_process import sim_process
from tests.support.waiting import wait_until


def long_recipe(url: str, results: str) -> str:
    return yaml.safe_dump({
        "scenario": "grpc-control", "endpoints": [url], "results_dir": results,
        "workload": {"service": "simulator", "model": "sim-model", "duration": "60s",
                     "warmup": "0s", "request_timeout": "10s", "concurrency": [2, 4],
                     "load": {"pattern": "closed"},
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 8},
                                 "output_tokens": {"distribution": "fixed", "mean": 4}}},
        "monitoring": {"enabled": False},
    })


def hpcbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpcbench.coordinator.cli.main", *args],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))


def test_start_watch_subscribe_and_stop_a_session_from_other_processes(tmp_path, daemon):
    with sim_process(tmp_path) as url, ControlClient(locate(run_dir=daemon)) as client:
        started = client.start(recipe_yaml=long_recipe(url, str(tmp_path / "results")),
                               session_id="g1")
        assert started.session_id == "g1"

        # Watch: the current status first, then snapshots with measured requests
        events = client.watch("g1")
        first = next(events)
        assert first.WhichOneof("event") == "status" and first.status.session_id == "g1"
        snapshot = next(event.snapshot for event in events
                        if event.WhichOneof("event") == "snapshot" and event.snapshot.requests)
        assert snapshot.trial_id and snapshot.requests_per_s > 0 and snapshot.ttft_p50_ms > 0
        assert json.loads(snapshot.json)["run"] == "g1"

        status = client.status("g1")
        assert status.state == pb.RUNNING and status.trial.trial_id == snapshot.trial_id
        assert [agent.state for agent in status.agents] == [pb.BUSY]
        session_dir = tmp_path / "results" / "grpc-control" / "g1"
        assert oct((session_dir / "control.token").stat().st_mode & 0o777) == "0o600"

        # a bus subscriber joining mid-run gets the current state first, then live snapshots
        bus = subscribe(status.bus_endpoint, ["event", "snapshot"], idle_timeout_s=15)
        replayed = next(bus)
        assert replayed["replay"] is True
        live = next(message for message in bus
                    if message["topic"] == "snapshot" and not message["replay"])
        assert live["data"]["trial"] == snapshot.trial_id
        bus.close()

        watched = hpcbench("watch", "--run-dir", str(session_dir), "--count", "4", "--json")
        lines = [json.loads(line) for line in watched.stdout.splitlines()]
        assert watched.returncode == 0 and len(lines) == 4, watched.stderr
        assert lines[0]["replay"] is True and lines[0]["run"] == "g1"

        # the CLI finds the session from its run directory, shows it, and stops it
        shown = hpcbench("status", "--run-dir", str(session_dir))
        assert shown.returncode == 0 and "state     running" in shown.stdout, shown.stderr
        listed = hpcbench("status", "--run-dir", str(daemon), "--all")
        assert listed.stdout.startswith("g1  grpc-control  running"), listed.stderr
        stopped = hpcbench("stop", "--run-dir", str(session_dir), "--reason", "test is done")
        assert stopped.returncode == 0, stopped.stderr

        final = [event.status for event in events if event.WhichOneof("event") == "status"][-1]
        assert final.state == pb.STOPPED and final.trials_done == 0
        results = client.results("g1")
        assert results.run_dir == str(session_dir) and list(results.trials) == []
    # the trial cut short keeps its raw samples but is not finished: a re-run measures it again
    trial_dir = session_dir / snapshot.trial_id
    assert (trial_dir / "samples.msgpack.partial").stat().st_size > 0
    assert not (trial_dir / "trial.done").exists()
    record = json.loads((session_dir / "session.json").read_text())
    assert record["state"] == "STOPPED"
    ended = hpcbench("status", "--run-dir", str(session_dir))
    assert "state     stopped" in ended.stdout    # the daemon still answers for it
    late = hpcbench("watch", "--run-dir", str(session_dir))
    assert late.returncode == 0 and "has ended (stopped)" in late.stdout


def test_each_session_state_is_a_bus_event_in_order_up_to_the_end(tmp_path, daemon):
    """A subscriber that joins once the bus is up sees the current state, then every later one
    as it is entered, the last included (published just before the bus closes), then
    `session_end`."""
    recipe = yaml.safe_load(long_recipe("{url}", str(tmp_path / "results")))
    recipe["workload"].update(duration="1s", concurrency=[2])
    with sim_process(tmp_path) as url, ControlClient(locate(run_dir=daemon)) as client:
        recipe["endpoints"] = [url]
        client.start(recipe_yaml=yaml.safe_dump(recipe), session_id="s1")
        endpoint = wait_until(lambda: client.status("s1").bus_endpoint, timeout=60,
                              what="the session's bus")
        events = []
        for message in subscribe(endpoint, ["event"], idle_timeout_s=60):
            events.append(message["data"])
            if message["data"]["event"] == "session_end":
                break
    record = json.loads((tmp_path / "results" / "grpc-control" / "s1" / "session.json")
                        .read_text())
    # session.json's phases end at REPORTING; its `state` is the one entered after them
    entered = [phase["state"] for phase in record["phases"]] + [record["state"]]
    states = [event["state"] for event in events if event["event"] == "state"]
    assert entered[-1] == "COMPLETED" and len(states) >= 3
    assert states == entered[len(entered) - len(states):]
    assert events[-1]["event"] == "session_end" and events[-1]["state"] == "COMPLETED"


def test_two_sessions_on_one_daemon_keep_their_agents_apart(tmp_path, daemon):
    """Both sessions have an executor-0 and a monitor-localhost: calls name their session, so
    one session's heartbeats, reports and commands never reach the other's."""
    recipe = yaml.safe_load(long_recipe("{url}", str(tmp_path / "results")))
    recipe["workload"].update(duration="3s", concurrency=[2])
    recipe["monitoring"] = {"enabled": True, "interval": "500ms"}
    with sim_process(tmp_path) as url, ControlClient(locate(run_dir=daemon)) as client:
        recipe["endpoints"] = [url]
        for session in ("a", "b"):
            client.start(recipe_yaml=yaml.safe_dump(recipe), session_id=session)
        for session in ("a", "b"):
            final = wait_until(lambda session=session: client.status(session).state in (
                pb.COMPLETED, pb.FAILED, pb.STOPPED) and client.status(session), timeout=120,
                what=f"session {session} to end")
            assert final.state == pb.COMPLETED, final.error_message
            agents = {agent.agent_id: agent for agent in final.agents}
            assert set(agents) == {"executor-0", "monitor-localhost"}
            assert all(agent.state != pb.LOST for agent in agents.values()), agents
    for session in ("a", "b"):
        record = json.loads((tmp_path / "results" / "grpc-control" / session / "session.json")
                            .read_text())
        assert record["passed"] is True, record


def test_watch_of_an_unknown_session_is_not_found(daemon):
    from hpcbench.common.errors import HpcbenchError

    with ControlClient(locate(run_dir=daemon)) as client:
        with pytest.raises(HpcbenchError, match="NOT_FOUND"):
            list(client.watch("nope"))


def test_the_readme_control_client_runs_a_session(tmp_path, daemon, repo):
    readme = (repo / "README.md").read_text()
    section = readme.split("<!-- section: control -->")[1].split("<!-- end: control -->")[0]
    code = section.split("```python\n")[1].split("```")[0]
    with sim_process(tmp_path) as url:
        recipe = tmp_path / "short.yaml"
        recipe.write_text(long_recipe(url, "unused").replace("60s", "1s"))
        code = code.replace('"recipes/examples/local-sim.yaml"', repr(str(recipe)))
        code = code.replace('run_dir = "coord"', f"run_dir = {str(daemon)!r}")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("req/s, TTFT p99" in line for line in lines)
    assert lines[-1].startswith("COMPLETED ")
    # Results: every trial of the sweep, with its summary
    with ControlClient(locate(run_dir=daemon)) as client:
        [session] = client.list().sessions
        results = client.results(session.session_id)
    assert results.run_dir == lines[-1].split(" ", 1)[1]
    assert [trial.passed for trial in results.trials] == [True, True]
    for trial in results.trials:
        summary = json.loads(trial.summary_json)
        assert summary["trial"] == trial.trial_id and summary["overall"]["requests"] > 0
        assert (Path(trial.directory) / "trial.done").exists()


def test_sigterm_to_the_daemon_stops_its_session_and_every_component(tmp_path, daemon_process):
    import psutil

    process, run_dir = daemon_process
    with sim_process(tmp_path) as url, ControlClient(locate(run_dir=run_dir)) as client:
        client.start(recipe_yaml=long_recipe(url, "unused"), session_id="t1")
        wait_until(lambda: client.status("t1").state == pb.RUNNING, timeout=60,
                   what="the session to run")
        children = psutil.Process(process.pid).children(recursive=True)
        assert any("hpcbench.executor.agent" in child.cmdline() for child in children)
        process.terminate()
        assert process.wait(timeout=60) == 0
    record = json.loads((tmp_path / "results" / "grpc-control" / "t1" / "session.json")
                        .read_text())
    assert record["state"] == "STOPPED"
    assert not [child for child in children if child.is_running()
                and child.status() != psutil.STATUS_ZOMBIE]
