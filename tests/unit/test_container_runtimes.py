"""The container runtimes' command lines (servers/runtime.py): Apptainer's and podman's come
from one description and differ only in how each runtime says it. Podman's run for real in
tests/cluster/test_podman_slurm.py."""
from __future__ import annotations

import resource
from pathlib import Path

import pytest

from hpcbench.common.errors import HpcbenchError
from hpcbench.servers.plugin import LaunchContext
from hpcbench.servers.registry import get_service
from hpcbench.servers.runtime import (
    STOP_ON_SIGNAL,
    ContainerRun,
    apptainer_argv,
    cleanup_argv,
    hpcbench_image,
    limit_flags,
    podman_argv,
    podman_volume,
    service_image,
    wrap,
)

RUN = ContainerRun(image="img", argv=("hpcbench-executor", "--coordinator", "10.0.0.1:5"),
                   binds=("/data:/data:ro", "/results"), gpus=False, session="42")


def test_one_description_two_command_lines():
    assert apptainer_argv(RUN) == ["apptainer", "exec", "--bind", "/data:/data:ro",
                                   "--bind", "/results", "img", "hpcbench-executor",
                                   "--coordinator", "10.0.0.1:5"]
    wrapper = podman_argv(RUN)
    assert wrapper[:3] == ["sh", "-c", STOP_ON_SIGNAL]
    name, grace, podman = wrapper[4], wrapper[5], wrapper[6:]
    assert grace == "10"
    assert podman[:12] == ["podman", "run", "--rm", "--name", name, "--network", "host",
                           "--pid", "host", "--ipc", "host", "--env-host"]
    assert name.startswith("hpcbench-42-") and name != podman_argv(RUN)[4]
    assert "--env-host" in podman and ["--label", "org.hpcbench.session=42"] == podman[
        podman.index("--label"):podman.index("--label") + 2]
    volumes = [podman[i + 1] for i, flag in enumerate(podman) if flag == "--volume"]
    assert volumes == ["/data:/data:ro", "/results:/results"]
    # the command replaces the image's entrypoint, as `apptainer exec` skips %runscript
    assert podman[-5:] == ["--entrypoint", "hpcbench-executor", "img", "--coordinator",
                           "10.0.0.1:5"]


@pytest.mark.parametrize("bind, volume", [("/a", "/a:/a"), ("/a:ro", "/a:/a:ro"),
                                          ("/a:/b", "/a:/b"), ("/a:/b:rw", "/a:/b:rw")])
def test_apptainer_binds_become_podman_volumes(bind, volume):
    assert podman_volume(bind) == volume


def test_podman_asks_for_no_more_than_the_callers_limits():
    """Without CAP_SYS_RESOURCE a container cannot raise a hard limit: podman's defaults fail."""
    flags = limit_flags()
    values = dict(flags[i + 1].split("=") for i in range(0, len(flags), 2))
    soft, hard = (int(v) for v in values["nofile"].split(":"))
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = (int(v) for v in values["nproc"].split(":"))
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    assert soft <= hard <= pid_max


def test_gpus_without_a_cdi_spec_are_not_asked_for(tmp_path):
    """`--nv` on a node without GPUs only warns; podman's CDI device would fail the start."""
    assert "--nv" in apptainer_argv(ContainerRun("img", ("x",), gpus=True))
    assert "--device" not in podman_argv(ContainerRun("img", ("x",), gpus=True))


def test_cleanup_removes_the_sessions_containers():
    assert cleanup_argv("42") == ["podman", "rm", "--force", "--filter",
                                  "label=org.hpcbench.session=42"]


def test_wrap_labels_with_the_slurm_job_and_runs_in_the_runtime(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    argv = wrap(["ollama", "serve"], "podman", {"service": {"path": "ollama:latest"}}, [])
    assert "org.hpcbench.session=77" in argv and argv[-2:] == ["ollama:latest", "serve"]
    with pytest.raises(HpcbenchError, match="runtime 'docker' is not known"):
        wrap(["x"], "docker", {}, [])


def test_podman_images_are_names_or_oci_archives(monkeypatch):
    monkeypatch.setattr("hpcbench.servers.runtime.hpcbench_version", lambda: "1.2.3")
    assert hpcbench_image("executor", {}, "podman")[0] == "localhost/hpcbench-executor:1.2.3"
    artifacts = {"containers_dir": "/images", "service": {"path": "vllm.tar"},
                 "python": {"path": "docker.io/me/py:1"}}
    assert service_image(artifacts, "podman") == "oci-archive:/images/vllm.tar"
    assert hpcbench_image("monitor", artifacts, "podman")[0] == "docker.io/me/py:1"
    assert service_image(artifacts) == "/images/vllm.tar"  # Apptainer: a file, as given


def test_a_service_in_podman_is_the_same_command_in_its_image():
    def launch(**fields) -> list[str]:
        ctx = LaunchContext(service_config={"model_path": "/m", "max_model_len": 256},
                            model="tiny", node="node1", address="10.1.0.11", port=8000,
                            run_dir=Path("/run"), **fields)
        return get_service("vllm").launch(ctx).argv

    plain = launch()
    podman = launch(runtime="podman", artifacts={"service": {"path": "localhost/vllm:cpu"}})
    entry = podman.index("--entrypoint")
    assert [podman[entry + 1], *podman[entry + 3:]] == plain
    assert podman[entry + 2] == "localhost/vllm:cpu"


def test_the_coordinators_container_gets_the_hosts_slurm_client_read_only():
    import shutil

    from hpcbench.coordinator.launch.slurm import slurm_client_binds

    if not shutil.which("srun"):
        pytest.skip("Slurm's client is not installed (Debian package slurm-wlm)")
    binds = slurm_client_binds()
    paths = [bind.split(":")[0] for bind in binds]
    assert all(bind.endswith(":ro") and bind.split(":")[0] == bind.split(":")[1]
               for bind in binds)
    assert shutil.which("srun") in paths and shutil.which("scontrol") in paths
    assert any("slurm" in Path(path).name for path in paths)   # the library and plugin folder
    assert not [path for path in paths if Path(path).name.startswith(("libc.so", "ld-linux"))]


def test_the_session_runs_on_the_host_unless_the_runtime_is_podman(repo):
    import sys

    from hpcbench.coordinator.launch.sbatch_job import session_argv

    recipe = repo / "recipes" / "examples" / "ollama-single.yaml"   # runtime: apptainer
    assert session_argv(recipe) == [sys.executable, "-m", "hpcbench.coordinator.launch.sbatch_job",
                                    str(recipe)]
