"""Service plugins seen from other processes: a third-party entry point found by a separate
interpreter, and `hpcbench plan --commands` for the Ray example (registry and golden command
lines are checked in process by tests/unit/test_services_plugins.py)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap


def test_entry_point_plugin_is_found_in_a_separate_interpreter(tmp_path):
    """A third-party distribution registering `hpcbench.services` is usable by name."""
    (tmp_path / "echo_service.py").write_text(textwrap.dedent("""
        from hpcbench.servers.plugin import HttpService, LaunchSpec

        class EchoService(HttpService):
            name = "echo"
            default_port = 7777
            api = "openai-chat"

            def launch(self, ctx):
                return LaunchSpec(argv=["echo-server", str(ctx.port)],
                                  base_url=f"http://{ctx.address}:{ctx.port}")
    """))
    dist = tmp_path / "echo_service-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-service\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[hpcbench.services]\necho = echo_service:EchoService\nbroken = echo_service:Missing\n")
    probe = textwrap.dedent("""
        import json
        from hpcbench.common.errors import HpcbenchError
        from hpcbench.servers.registry import get_service, known_services, launch_commands
        recipe = {"workload": {"service": "echo", "model": None}}
        out = {"known": known_services(),
               "commands": launch_commands(recipe, {"servers": ["n1"]})}
        try:
            get_service("broken")
        except HpcbenchError as error:
            out["broken"] = [error.code, error.message]
        print(json.dumps(out))
    """)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["known"][-2:] == ["broken", "echo"]
    assert out["commands"][1] == "echo-server 7777"
    assert out["broken"][0] == "E006" and "failed to load" in out["broken"][1]


def test_plan_commands_shows_every_server_node_of_the_ray_example(repo, cli_env):
    shown = subprocess.run(["hpcbench", "plan", "--commands",
                            str(repo / "recipes/examples/vllm-ray-2nodes.yaml")],
                           env=cli_env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    commands = shown.stdout.split("server commands:", 1)[1].strip().splitlines()
    heads = [line for line in commands if "hpcbench.servers.ray_cluster head" in line]
    workers = [line for line in commands if "hpcbench.servers.ray_cluster worker" in line]
    assert len(heads) == 1 and len(workers) >= 1
    for line in heads + workers:
        shlex.split(line)  # every line is valid shell
    assert "--distributed-executor-backend" in heads[0]
