"""The laptop side of `--remote` that needs no SSH server: what `submit --remote` uploads (the
recipe, the local files it names, rewritten to their copies), how `ssh`'s own failures read,
and that a fetched tar stream cannot write outside the session's directory."""
from __future__ import annotations

import io
import tarfile

import pytest
import yaml

from hpcbench.common.errors import HpcbenchError
from hpcbench.coordinator.remote import download, upload
from hpcbench.coordinator.remote.ssh import SshConnection, connection_error, remote_path

RECIPE = {"scenario": "s", "workload": {"service": "simulator", "model": "m",
                                        "dataset": {"kind": "jsonl", "path": None},
                                        "load": {"pattern": "trace", "trace": None}}}


def write_recipe(path, dataset: str | None, trace: str | None) -> None:
    data = yaml.safe_load(yaml.safe_dump(RECIPE))
    data["workload"]["dataset"]["path"] = dataset
    data["workload"]["load"]["trace"] = trace
    path.write_text("# my comment\n" + yaml.safe_dump(data))


def test_named_local_files_travel_and_the_copied_recipe_names_their_copies(tmp_path):
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    (tmp_path / "trace.csv").write_text("0,1\n")
    recipe = tmp_path / "bench.yaml"
    write_recipe(recipe, str(tmp_path / "prompts.jsonl"), str(tmp_path / "trace.csv"))
    prepared = upload.prepare(recipe, [], "/home/u/runs", stamp="T")
    assert prepared.recipe_name == "recipes/T-bench.yaml"
    assert set(prepared.files) == {"inputs/T/prompts.jsonl", "inputs/T/trace.csv"}
    copied = yaml.safe_load(prepared.recipe_bytes)
    assert copied["workload"]["dataset"]["path"] == "/home/u/runs/inputs/T/prompts.jsonl"
    assert copied["workload"]["load"]["trace"] == "/home/u/runs/inputs/T/trace.csv"
    with tarfile.open(fileobj=io.BytesIO(prepared.tar())) as archive:
        assert sorted(archive.getnames()) == ["inputs/T/prompts.jsonl", "inputs/T/trace.csv",
                                              "recipes/T-bench.yaml"]
        assert archive.extractfile("inputs/T/trace.csv").read() == b"0,1\n"


def test_a_recipe_naming_cluster_paths_travels_unchanged(tmp_path):
    recipe = tmp_path / "bench.yaml"
    write_recipe(recipe, "/scratch/on/the/cluster.jsonl", None)
    prepared = upload.prepare(recipe, [], "/home/u/runs", stamp="T")
    assert prepared.files == {} and prepared.recipe_bytes == recipe.read_bytes()


def test_wheels_go_to_plugins_and_other_files_are_refused(tmp_path):
    recipe, wheel = tmp_path / "bench.yaml", tmp_path / "plug-1.0-py3-none-any.whl"
    write_recipe(recipe, None, None)
    wheel.write_bytes(b"PK")
    prepared = upload.prepare(recipe, [str(wheel)], "/home/u/runs", stamp="T")
    assert prepared.wheels == ["plugins/plug-1.0-py3-none-any.whl"]
    with pytest.raises(HpcbenchError) as refused:
        upload.prepare(recipe, [str(recipe)], "/home/u/runs")
    assert refused.value.code == "E006" and "--wheel" in refused.value.message


@pytest.mark.parametrize("said, code, words", [
    ("ssh: Could not resolve hostname x: Name or service not known", "E006", "unknown SSH host"),
    ("root@1.2.3.4: Permission denied (publickey).", "E008", "authentication to h failed"),
    ("ssh: connect to host 1.2.3.4 port 2: Connection refused", "E008", "h refused"),
    ("Host key verification failed.", "E008", "host key of h"),
    ("ssh: connect to host 1.2.3.4 port 22: Connection timed out", "E008", "cannot connect"),
])
def test_ssh_failures_name_the_host_and_a_fix(said, code, words):
    error = connection_error("h", said)
    assert error.code == code and words in error.message
    assert any(line.startswith("fix:") for line in error.details)


@pytest.mark.parametrize("host", ["", "-oProxyCommand=x", "a b"])
def test_a_host_that_is_not_one_is_refused_before_ssh_runs(host):
    with pytest.raises(HpcbenchError) as refused:
        SshConnection(host)
    assert refused.value.code == "E006"


def test_remote_paths_start_at_home_and_are_quoted():
    assert remote_path("~/runs") == "runs" and remote_path("~") == "."
    assert remote_path("/scratch/my runs") == "'/scratch/my runs'"


def test_a_fetched_stream_writes_only_regular_files_inside_the_session(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (("ok/summary.json", b"{}"), ("../escape", b"x")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_000_000
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    buffer.seek(0)
    target = tmp_path / "session"
    with tarfile.open(fileobj=buffer, mode="r|") as archive:
        for member in archive:
            download.extract_member(archive, member, target)
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")) == \
        ["session", "session/ok", "session/ok/summary.json"]
    assert (target / "ok" / "summary.json").stat().st_mtime == 1_000_000


def test_without_remote_a_job_id_names_the_session_on_the_login_node_too():
    from hpcbench.coordinator.cli.main import build_parser
    from hpcbench.coordinator.cli.remote_options import job_as_session

    args = build_parser().parse_args(["status", "--job", "4242"])
    job_as_session(args)
    assert args.session == "4242"
    clash = build_parser().parse_args(["stop", "--job", "4242", "--session", "17"])
    with pytest.raises(HpcbenchError) as refused:
        job_as_session(clash)
    assert refused.value.code == "E006" and "--job 4242 and --session 17" in refused.value.message
