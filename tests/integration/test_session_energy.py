"""A trial's GPU energy in summary.json: a real `hpcbench run` whose monitor sees two GPUs of
the NVML test double (fake_nvml), each drawing a steady 300 W, so the expected joules are known:
600 W times the part of the measured window the telemetry covered. `hpcbench report` of the run
then shows the same figures in report.html and the run's summary.csv/summary.json, and the
simulator's version (hpcbench's) recorded in session.json."""
import csv
import json
import os
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from hpcbench.coordinator.report.markup import cell
from tests.integration.test_run_e2e import hpcbench_run, trial_dirs
from tests.support import fake_nvml
from tests.support.report_runs import hpcbench
from tests.support.sim_process import sim_process

WATTS_PER_GPU = 300

METERED_SITECUSTOMIZE = '''\
"""fake_nvml for a child process: two fake GPUs at a steady {watts} W each."""
import sys
import time
sys.path.insert(0, {support!r})
import fake_nvml


class MeteredGpu(fake_nvml.FakeGpu):
    """A fake GPU whose energy counter (mJ) advances with the wall clock at {watts} W."""

    @property
    def energy_mj(self):
        return int(time.time() * {watts} * 1000)

    @energy_mj.setter
    def energy_mj(self, value):
        pass


sys.modules["pynvml"] = fake_nvml.build(
    [MeteredGpu(uuid=f"GPU-fake-{{index}}", power_mw={watts} * 1000) for index in range(2)])
'''


def fake_nvml_env(directory: Path) -> dict:
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(METERED_SITECUSTOMIZE.format(
        watts=WATTS_PER_GPU, support=str(Path(fake_nvml.__file__).parent)))
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(directory),
                                                         os.environ.get("PYTHONPATH")]))}


def energy_recipe(path: Path, url: str, monitoring: bool = True) -> Path:
    path.write_text(yaml.safe_dump({
        "scenario": "energy", "endpoints": [url], "orchestration": {"mode": "local"},
        "monitoring": {"enabled": monitoring, "interval": "250ms"},
        "workload": {"service": "simulator", "model": "sim-model", "duration": "1.5s",
                     "warmup": "0s", "request_timeout": "10s", "concurrency": 2,
                     "load": {"pattern": "closed"},
                     "dataset": {"input_tokens": {"distribution": "fixed", "mean": 8},
                                 "output_tokens": {"distribution": "fixed", "mean": 8}}},
    }))
    return path


def energy_run(tmp_path: Path, monkeypatch, monitoring: bool = True) -> Path:
    """The run directory of a one-trial run against a simulator process, its report built."""
    for key, value in fake_nvml_env(tmp_path / "fake_nvml").items():
        monkeypatch.setenv(key, value)
    (tmp_path / "sim").mkdir()
    with sim_process(tmp_path / "sim") as url:
        done = hpcbench_run(str(energy_recipe(tmp_path / "recipe.yaml", url, monitoring)),
                            "--results-dir", str(tmp_path / "results"), "--session", "s1")
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = tmp_path / "results" / "energy" / "s1"
    reported = hpcbench("report", str(run_dir))
    assert reported.returncode == 0, reported.stderr
    return run_dir


def trial_summary(run_dir: Path) -> dict:
    (trial_dir,) = trial_dirs(run_dir).values()
    return json.loads((trial_dir / "summary.json").read_text())


def run_summary_row(run_dir: Path) -> dict:
    with open(run_dir / "summary.csv") as source:
        (row,) = csv.DictReader(source)
    return row


def test_fake_nvml_gpus_give_the_trial_its_energy_and_tokens_per_joule(tmp_path, monkeypatch):
    run_dir = energy_run(tmp_path, monkeypatch)
    summary = trial_summary(run_dir)
    window = summary["window"]
    assert window["end_ns"] > window["start_ns"]
    energy = summary["energy"]
    assert energy["source"] == "energy counter" and energy["gpus"] == 2
    assert energy["window_s"] == pytest.approx((window["end_ns"] - window["start_ns"]) / 1e9)
    assert 0 < energy["covered_s"] <= energy["window_s"] + 1e-9
    assert energy["joules"] == pytest.approx(2 * WATTS_PER_GPU * energy["covered_s"], rel=0.02)
    output_tokens = summary["overall"]["output_tokens"]
    assert output_tokens > 0
    assert energy["output_tokens_per_joule"] == pytest.approx(output_tokens / energy["joules"])

    row = run_summary_row(run_dir)
    assert float(row["energy_j"]) == energy["joules"]
    assert float(row["output_tokens_per_joule"]) == energy["output_tokens_per_joule"]
    assert row["energy_source"] == "energy counter"
    (trial,) = json.loads((run_dir / "summary.json").read_text())["trials"]
    assert trial["energy"] == energy
    report = (run_dir / "report.html").read_text()
    assert ">GPU energy (J)</th><th>output tokens/J</th>" in report
    assert (f"<td>{cell(energy['joules'])}</td><td>{cell(energy['output_tokens_per_joule'])}"
            "</td>") in report
    assert "not measured</td>" not in report


def test_without_gpu_telemetry_energy_is_not_measured(tmp_path, monkeypatch):
    """Also: the simulator answers /version with hpcbench's version, recorded in session.json
    once the server is healthy and shown in the report's environment."""
    run_dir = energy_run(tmp_path, monkeypatch, monitoring=False)
    summary = trial_summary(run_dir)
    assert "energy" not in summary
    assert summary["window"]["end_ns"] > summary["window"]["start_ns"]
    row = run_summary_row(run_dir)
    assert (row["energy_j"], row["output_tokens_per_joule"], row["energy_source"]) == (
        "", "", "not measured")
    report = (run_dir / "report.html").read_text()
    assert "<td>not measured</td><td>not measured</td>" in report

    session = json.loads((run_dir / "session.json").read_text())
    assert session["server_version"] == version("hpcbench")
    assert (f'<td class="text">simulator server version</td><td class="text">'
            f'{version("hpcbench")}</td>') in report

