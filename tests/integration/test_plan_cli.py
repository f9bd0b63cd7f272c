"""`hpcbench plan` as a process: JSON and text output, too few nodes, server commands (the
planning rules themselves are checked in process by tests/unit/test_plan.py)."""
import json
import subprocess


def test_cli_plan_json(cli_env, repo):
    done = subprocess.run(["hpcbench", "plan", str(repo / "recipes/examples/sweep.yaml"),
                           "--node-names", "a", "--json"],
                          capture_output=True, text=True, env=cli_env)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert len(plan["trials"]) == 18
    assert plan["nodes"] == {"a": ["coordinator", "server", "client x1", "monitor"]}


def test_cli_plan_text_for_a_node_count(cli_env, repo):
    done = subprocess.run(["hpcbench", "plan", str(repo / "recipes/examples/vllm-ray-2nodes.yaml"),
                           "--nodes", "5"], capture_output=True, text=True, env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "node2  ray-head, monitor" in done.stdout
    assert "exec-1 on node5 -> http://node2:8000" in done.stdout


def test_cli_plan_with_too_few_nodes_exits_2(cli_env, repo):
    done = subprocess.run(["hpcbench", "plan", str(repo / "recipes/examples/vllm-ray-2nodes.yaml"),
                           "--nodes", "1"], capture_output=True, text=True, env=cli_env)
    assert done.returncode == 2
    assert "error E006" in done.stderr and "Traceback" not in done.stderr


def test_cli_plan_shows_server_commands(cli_env, repo):
    done = subprocess.run(["hpcbench", "plan", str(repo / "recipes/examples/local-sim.yaml"),
                           "--commands"], capture_output=True, text=True, env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "server commands:" in done.stdout
    assert "sim --host node1 --port 8000 --model sim-llama" in done.stdout
