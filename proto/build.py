"""Regenerate the control-plane gRPC/protobuf code: `make proto` (python -m hpcbench.proto.build).

protoc names generated modules after the .proto path (hpcbench/control/v1/control.proto ->
hpcbench.control.v1.control_pb2), but they live in this folder as `hpcbench.proto.control_v1_pb2`.
So the code is generated into a temporary directory and the module references are rewritten
to the package path before the files are written here. The output depends only on the .proto
files and the pinned grpcio-tools version, so `--check` (and tests/unit/test_control_proto.py)
can prove the committed files are exactly what the .proto files produce.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
# .proto path under PROTO_ROOT -> module name under hpcbench.proto
SOURCES: dict[str, str] = {
    "hpcbench/control/v1/control.proto": "control_v1",
}
PACKAGE = "hpcbench.proto"


def generate() -> dict[str, bytes]:
    """Return {file name in PROTO_ROOT: content} for every generated file."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    outputs: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for source, module in SOURCES.items():
            status = protoc.main(["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}",
                                  f"--python_out={scratch}", f"--grpc_python_out={scratch}",
                                  f"--pyi_out={scratch}", source])
            if status != 0:
                raise RuntimeError(f"protoc failed on {source} (exit {status})")
            stem = source[:-len(".proto")]
            generated_module = stem.replace("/", ".")
            for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
                text = (Path(scratch) / f"{stem}{suffix}").read_text()
                text = _relocate(text, generated_module, f"{PACKAGE}.{module}")
                outputs[f"{module}{suffix}"] = text.encode()
    return outputs


def _relocate(text: str, generated_module: str, target_module: str) -> str:
    """Point protoc's module references (imports, __module__ names) at the package path."""
    package, _, name = generated_module.rpartition(".")
    target_package, _, target_name = target_module.rpartition(".")
    text = text.replace(f"from {package} import {name}_pb2 ",
                        f"from {target_package} import {target_name}_pb2 ")
    return text.replace(f"'{generated_module}_pb2'", f"'{target_module}_pb2'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcbench.proto.build", description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a committed file differs from a fresh build")
    args = parser.parse_args(argv)
    stale = []
    for name, content in generate().items():
        path = PROTO_ROOT / name
        if path.exists() and path.read_bytes() == content:
            continue
        stale.append(name)
        if not args.check:
            path.write_bytes(content)
    if args.check and stale:
        print(f"generated code is stale: {', '.join(stale)}; run `make proto`", file=sys.stderr)
        return 1
    print(f"{'checked' if args.check else 'generated'} {len(SOURCES)} proto file(s); "
          f"{'stale' if args.check else 'rewritten'}: {', '.join(stale) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
