"""`hpcbench report` on real runs: the page a browser shows, its self-containment, its numbers,
its determinism, the run summaries and the per-request exports.

The runs are real `hpcbench run`s (tests/support/report_runs.py); the report written at the end
of each run is compared with one rebuilt from a copy of the run directory alone.
"""
import base64
import csv
import io
import json
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hpcbench.common.measure.statistics import exact_stats
from hpcbench.coordinator.report.goodput import slo_attainment
from hpcbench.coordinator.report.rundata import load_run
from tests.support.report_runs import SCENARIO, demo_run, hpcbench

CHROMIUM = shutil.which("chromium")
IMAGE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" width="(\d+)" '
                   r'height="(\d+)"')


@pytest.fixture(scope="session")
def faulty_run(tmp_path_factory) -> Path:
    return demo_run(tmp_path_factory, "faulty")


def report_text(run_dir: Path) -> str:
    return (run_dir / "report.html").read_text()


def test_the_run_wrote_a_report_that_a_rebuild_from_the_directory_alone_equals(faulty_run,
                                                                                tmp_path):
    written = (faulty_run / "report.html").read_bytes()
    copy = tmp_path / "elsewhere" / SCENARIO / faulty_run.name
    shutil.copytree(faulty_run, copy)
    (copy / "report.html").unlink()
    done = hpcbench("report", str(copy))
    assert done.returncode == 0, done.stderr
    assert (copy / "report.html").read_bytes() == written
    assert (copy / "summary.csv").read_bytes() == (faulty_run / "summary.csv").read_bytes()


def test_the_report_refers_to_nothing_outside_itself(faulty_run):
    text = report_text(faulty_run)
    references = re.findall(r'(?:src|href)\s*=\s*["\']?([^"\'\s>]+)', text, re.IGNORECASE)
    assert references, "the report embeds its plots"
    assert all(ref.startswith(("data:", "#")) for ref in references), references
    assert not re.search(r"(https?:)?//[A-Za-z0-9]", re.sub(r"data:[^\"']+", "", text))
    assert "<script" not in text and "<link" not in text and "@import" not in text


def test_the_report_has_every_section_and_all_plots_with_readable_sizes(faulty_run):
    text = report_text(faulty_run)
    for heading in ("Configuration and environment", "Latency", "The server's own view", "Sweep",
                    "Goodput against the SLOs", "Each trial over time", "Telemetry per node"):
        assert f">{heading}</h2>" in text, heading
    for table in ("TTFT (time to first token), ms", "ITL (inter-token latency), ms",
                  "TPOT (time per output token), ms", "E2E (end-to-end latency), ms"):
        assert table in text
    assert "localhost" in text and "sim-llama" in text
    assert re.search(r'<td class="text">hpcbench git commit</td><td class="text">'
                     r'(?:[0-9a-f]{40}(?:\+dirty)?|unknown)</td>', text)
    assert (f'<td class="text">simulator server version</td><td class="text">'
            f'{version("hpcbench")}</td>') in text   # the simulator's is hpcbench's
    assert "http_status" in text and "connection_reset" in text   # errors by class
    assert text.count(">ok</td></tr>") == 4 and "above the recipe's error threshold" not in text
    images = IMAGE.findall(text)
    # CDFs, the TTFT split and the server per trial (4), sweep, goodput, one per trial over
    # time (4), one telemetry node
    assert len(images) == 1 + 1 + 4 + 1 + 1 + 4 + 1
    for payload, width, height in images:
        picture = Image.open(io.BytesIO(base64.b64decode(payload)))
        assert picture.size == (int(width), int(height)) and picture.width == 1100
        assert 300 <= picture.height <= 1000
        pixels = np.asarray(picture.convert("RGB"), dtype=np.int16)
        coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 60   # lines and bars, not text
        assert coloured.mean() > 0.002, "a plot without coloured marks"


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian chromium (make test installs it)")
def test_headless_chromium_shows_the_plots(faulty_run, tmp_path):
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1280,16000", (faulty_run / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    screen = np.asarray(Image.open(shot).convert("RGB"))
    assert screen.shape[:2] == (16000, 1280)
    shown = [where_shown(screen, plot) for plot in embedded_plots(faulty_run)]
    # every plot (latency CDFs, sweep, goodput, timelines, telemetry, ...) shows pixel for
    # pixel at its full size, one below the other
    assert len(shown) >= 5 and None not in shown, shown
    assert [y for y, _ in shown] == sorted(y for y, _ in shown)


def embedded_plots(run_dir: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))
            for payload, _, _ in IMAGE.findall(report_text(run_dir))]


def where_shown(screen: np.ndarray, plot: np.ndarray) -> tuple[int, int] | None:
    """Top-left corner where `plot` appears unscaled and unchanged in `screen`, else None."""
    height, width, _ = plot.shape
    colours = [len(np.unique(row, axis=0)) for row in plot[::8]]
    probe = int(np.argmax(colours)) * 8          # the row that crosses the most marks
    target = plot[probe].tobytes()
    for y in range(probe, screen.shape[0] - (height - probe) + 1):
        x = screen[y].tobytes().find(target)
        if x >= 0 and x % 3 == 0:
            top, left = y - probe, x // 3
            if np.array_equal(screen[top:top + height, left:left + width], plot):
                return top, left
    return None


def test_the_report_numbers_are_the_aggregators(faulty_run):
    """Per-request latencies and goodput recomputed from raw samples agree with summary.json."""
    run = load_run(faulty_run)
    assert len(run.trials) == 4 and run.nodes == ["localhost"]
    for trial in run.trials:
        for metric in ("ttft", "itl", "tpot", "e2e"):
            assert exact_stats(trial.requests.latency(metric)) == trial.summary["exact"][metric]
        overall = trial.summary["overall"]
        attained = slo_attainment(trial.requests, trial.slos_s, overall["seconds"])
        assert attained.requests == overall["requests"]
        assert attained.good == overall["good_requests"] < overall["requests"]


def test_run_summary_has_one_row_per_trial(faulty_run):
    with open(faulty_run / "summary.csv") as source:
        rows = list(csv.DictReader(source))
    assert [row["trial"] for row in rows] == ["concurrency-2_rep-1", "concurrency-8_rep-1",
                                              "concurrency-2_rep-2", "concurrency-8_rep-2"]
    assert {row["concurrency"] for row in rows} == {"2", "8"}
    document = json.loads((faulty_run / "summary.json").read_text())
    for row, trial in zip(rows, document["trials"]):
        assert float(row["ttft_p99_ms"]) == trial["exact"]["ttft"]["p99"]
        assert int(row["requests"]) == trial["overall"]["requests"]


def test_per_request_exports_hold_every_request(faulty_run, tmp_path):
    run_dir = tmp_path / SCENARIO / faulty_run.name
    shutil.copytree(faulty_run, run_dir)
    done = hpcbench("report", str(run_dir), "--export", "csv", "--export", "jsonl")
    assert done.returncode == 0, done.stderr
    with open(run_dir / "requests.csv") as source:
        from_csv = list(csv.DictReader(source))
    from_jsonl = [json.loads(line) for line in (run_dir / "requests.jsonl").open()]
    assert len(from_csv) == len(from_jsonl) > 0
    run = load_run(run_dir)
    assert len(from_jsonl) == sum(len(trial.requests) for trial in run.trials)
    for trial in run.trials:
        mine = [row for row in from_jsonl if row["trial"] == trial.trial_id]
        measured = [row for row in mine if row["phase"] == "measured"]
        overall = trial.summary["overall"]
        assert len(measured) == overall["requests"]
        assert sum(row["error"] != "ok" for row in measured) == overall["error_total"]
        e2e = sorted(row["e2e_ms"] for row in measured if row["e2e_ms"] is not None)
        assert e2e[-1] == pytest.approx(trial.summary["exact"]["e2e"]["max"])
    for row_csv, row_json in zip(from_csv, from_jsonl):
        assert row_csv["trial"] == row_json["trial"]
        assert int(row_csv["req_id"]) == row_json["req_id"]
        assert (row_csv["ttft_ms"] == "") == (row_json["ttft_ms"] is None)


@pytest.mark.parametrize("make, message", [
    (lambda root: root / "missing", "does not exist"),
    (lambda root: root, "no finished trial"),
])
def test_report_of_a_non_run_directory_says_what_to_pass(tmp_path, make, message):
    done = hpcbench("report", str(make(tmp_path)))
    assert done.returncode == 2
    assert "error E006" in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr


def test_report_of_a_trial_directory_names_its_parent(faulty_run):
    trial = next(path for path in faulty_run.iterdir() if (path / "trial.done").exists())
    done = hpcbench("report", str(trial))
    assert done.returncode == 2 and f"pass its parent: {faulty_run}" in done.stderr


def test_a_damaged_or_interrupted_run_still_gets_a_report(faulty_run, tmp_path):
    """An interrupted trial (no trial.done), a torn telemetry line, no session.json: the report
    covers what finished and says what is missing."""
    run_dir = tmp_path / SCENARIO / faulty_run.name
    shutil.copytree(faulty_run, run_dir)
    (run_dir / "concurrency-8_rep-2" / "trial.done").unlink()
    (run_dir / "session.json").unlink()
    with open(run_dir / "telemetry" / "localhost.csv", "a") as telemetry:
        telemetry.write("2026-11-2")
    done = hpcbench("report", str(run_dir))
    assert done.returncode == 0, done.stderr
    text = report_text(run_dir)
    assert "Unfinished trials (no trial.done, not reported): concurrency-8_rep-2" in text
    assert "unknown (no session.json)" in text
    assert len(IMAGE.findall(text)) == 1 + 1 + 3 + 1 + 1 + 3 + 1
    with open(run_dir / "summary.csv") as source:
        assert len(list(csv.DictReader(source))) == 3


def test_the_cdf_steps_through_every_sample_or_evenly_spaced_ranks():
    from hpcbench.coordinator.report.plots import CDF_POINTS, empirical_cdf

    points, fractions = empirical_cdf(np.array([30, 10, 20]))
    assert points.tolist() == [10, 10, 20, 30] and fractions.tolist() == [0, 1 / 3, 2 / 3, 1]
    many = np.random.default_rng(1).lognormal(15, 1, 100_000)
    points, fractions = empirical_cdf(many)
    assert len(points) <= CDF_POINTS + 1 and points[-1] == many.max() and fractions[-1] == 1
    assert np.all(np.diff(points) >= 0) and np.all(np.diff(fractions) > 0)


def test_damaged_raw_samples_are_named_not_a_traceback(faulty_run, tmp_path):
    run_dir = tmp_path / SCENARIO / faulty_run.name
    shutil.copytree(faulty_run, run_dir)
    with open(run_dir / "concurrency-2_rep-1" / "samples.msgpack", "r+b") as samples:
        samples.write(b"\x81\xa1v\x07")   # a map whose schema version is wrong
    done = hpcbench("report", str(run_dir))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "concurrency-2_rep-1" in done.stderr and "samples.msgpack" in done.stderr
