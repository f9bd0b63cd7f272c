"""`make bench`: run every tests/bench/bench_*.py and print their figures as one JSON document.

Each bench module defines `run() -> dict` of named figures (with units in the names, e.g.
`ingest_samples_per_s`) and may define `TARGETS = {figure: (op, value)}` so the output says
whether each target is met. Benchmarks print; they never fail a build.
"""
import importlib.util
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def judge(value, op, target) -> bool:
    return value >= target if op == ">=" else value <= target


def main(selected: list[str]) -> int:
    report = {}
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if selected and name not in selected:
            continue
        module = load(path)
        started = time.perf_counter()
        figures = module.run()
        targets = getattr(module, "TARGETS", {})
        report[name] = {
            "figures": figures,
            "targets": {key: {"target": f"{op} {value}", "met": judge(figures[key], op, value)}
                        for key, (op, value) in targets.items() if key in figures},
            "bench_seconds": round(time.perf_counter() - started, 1),
        }
        print(f"bench {name}: done", file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
