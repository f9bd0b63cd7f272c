"""One podman step for real (servers/runtime.py's podman argv): the program runs in the image
with the host's network and the caller's environment, and a signal to the step stops the
container even when the `podman run` client is already gone (the container is conmon's child,
so the step stops it by name). Needs root, podman and `make images`."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from support.podman_images import images_missing
from support.waiting import wait_until

from hpcbench.servers.runtime import SESSION_LABEL, ContainerRun, hpcbench_image, podman_argv

pytestmark = pytest.mark.slow
SESSION = f"steptest{os.getpid()}"


@pytest.fixture(autouse=True)
def needs_images():
    reason = images_missing()
    if reason:
        pytest.skip(reason)
    yield
    subprocess.run(["podman", "rm", "--force", "--filter", f"label={SESSION_LABEL}={SESSION}"],
                   capture_output=True)


def running() -> list[dict]:
    shown = subprocess.run(["podman", "ps", "--format", "json", "--filter",
                            f"label={SESSION_LABEL}={SESSION}"], capture_output=True, text=True,
                           check=True)
    return json.loads(shown.stdout or "[]")


def test_the_program_sees_the_callers_environment_and_network():
    image = hpcbench_image("executor", {}, "podman")[0]
    probe = "import os, socket; print(os.environ['HB_PROBE'], socket.gethostname())"
    argv = podman_argv(ContainerRun(image, ("python3", "-c", probe), session=SESSION))
    ran = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HB_PROBE": "from-the-caller"})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["from-the-caller", os.uname().nodename]


def start_step() -> subprocess.Popen:
    image = hpcbench_image("executor", {}, "podman")[0]
    step = subprocess.Popen(podman_argv(ContainerRun(image, ("sleep", "600"), session=SESSION)),
                            start_new_session=True)
    wait_until(running, timeout=120, interval=0.2, what="the container to run")
    return step


def test_a_signal_to_the_step_stops_its_container():
    step = start_step()
    try:
        step.send_signal(signal.SIGTERM)
        wait_until(lambda: not running(), timeout=60, interval=0.2,
                   what="the container to stop after SIGTERM to the step")
        assert step.wait(30) != 0
    finally:
        if step.poll() is None:
            step.kill()


def test_a_step_whose_client_is_killed_stops_its_container():
    step = start_step()
    try:
        client = subprocess.run(["pgrep", "-P", str(step.pid), "-x", "podman"],
                                capture_output=True, text=True).stdout.split()
        assert len(client) == 1
        os.kill(int(client[0]), signal.SIGKILL)   # conmon keeps the container alone
        wait_until(lambda: not running(), timeout=60, interval=0.2,
                   what="the container to stop after its client was killed")
        assert step.wait(30) == 128 + signal.SIGKILL
    finally:
        if step.poll() is None:
            step.kill()
