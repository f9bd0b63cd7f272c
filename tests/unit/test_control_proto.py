"""The control-plane contract: generated code is reproducible and importable under hpcbench.proto."""
from pathlib import Path

from hpcbench.proto import build


def test_regenerating_from_proto_is_byte_identical_to_committed_files():
    generated = build.generate()
    assert set(generated) == {"control_v1_pb2.py", "control_v1_pb2.pyi", "control_v1_pb2_grpc.py"}
    for name, content in generated.items():
        committed = (build.PROTO_ROOT / name).read_bytes()
        assert committed == content, f"{name} differs from a fresh build: run `make proto`"


def test_generated_modules_import_under_the_package_and_carry_a_versioned_package():
    from hpcbench.proto import control_v1_pb2, control_v1_pb2_grpc

    assert control_v1_pb2.DESCRIPTOR.package == "hpcbench.control.v1"
    assert control_v1_pb2.SessionStatus.__module__ == "hpcbench.proto.control_v1_pb2"
    services = set(control_v1_pb2.DESCRIPTOR.services_by_name)
    assert services == {"Control", "Agent"}
    assert hasattr(control_v1_pb2_grpc, "add_ControlServicer_to_server")
    grpc_source = Path(control_v1_pb2_grpc.__file__).read_text()
    assert "from hpcbench.proto import control_v1_pb2" in grpc_source


def test_check_mode_reports_a_stale_file(tmp_path, monkeypatch, capsys):
    for name, content in build.generate().items():
        (tmp_path / name).write_bytes(content)
    monkeypatch.setattr(build, "PROTO_ROOT", tmp_path)
    # generate() reads the .proto from PROTO_ROOT too: give it the sources
    source_dir = Path(build.__file__).resolve().parent
    for source in build.SOURCES:
        target = tmp_path / source
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((source_dir / source).read_bytes())
    assert build.main(["--check"]) == 0
    (tmp_path / "control_v1_pb2.py").write_text("# edited by hand\n")
    assert build.main(["--check"]) == 1
    assert "control_v1_pb2.py" in capsys.readouterr().err
