"""The per-request table and its timeline on known batches (tests/support/sample_batches.py)."""
import numpy as np

from hpcbench.common.measure.definitions import MISSING
from hpcbench.common.measure.percentiles import exact_percentiles
from hpcbench.coordinator.report.requests import load_requests
from hpcbench.coordinator.report.timeline import timeline
from hpcbench.proto.samples import ErrorClass, Phase, encode
from tests.support.sample_batches import make_batch


def write_samples(path, batches):
    path.write_bytes(b"".join(encode(batch) for batch in batches))
    return path


def test_rows_keep_their_executor_node_and_latencies(tmp_path):
    batches = [make_batch(0, 50, executor="exec-0", errors={3: ErrorClass.HTTP_STATUS}),
               make_batch(1, 50, executor="exec-1", errors={4: ErrorClass.TIMEOUT}),
               make_batch(2, 20, executor="exec-0", phase=Phase.WARMUP)]
    table = load_requests(write_samples(tmp_path / "samples.msgpack", batches))
    assert len(table) == 120 and table.executors == ["exec-0", "exec-1"]
    cols = table.columns
    assert cols["executor"].tolist() == [0] * 50 + [1] * 50 + [0] * 20
    # a failed request defines no TTFT; a timeout keeps its E2E (it ends at the timeout)
    assert cols["ttft_ns"][3] == MISSING and cols["e2e_ns"][3] == MISSING
    assert cols["ttft_ns"][54] == MISSING and cols["e2e_ns"][54] != MISSING
    first = batches[0].columns
    assert cols["ttft_ns"][0] == first["first_ns"][0] - first["intended_ns"][0]   # open loop
    # the largest gap of a request is the largest of its own ITL samples
    gaps = batches[0].itl_ns[:8]
    assert cols["max_itl_ns"][0] == gaps.max()
    # warmup rows are in the table but not in the measured latencies
    assert len(table.latency("e2e")) == 99 and len(table.latency("ttft")) == 98


def test_timeline_bins_every_measured_request_once_by_its_end(tmp_path):
    batches = [make_batch(seq, 500, spacing_ns=4_000_000, seed=seq,
                          errors={7: ErrorClass.CONNECTION_RESET, 9: ErrorClass.HTTP_STATUS})
               for seq in range(2)]
    table = load_requests(write_samples(tmp_path / "samples.msgpack", batches))
    binned = timeline(table)
    assert sum(counts.sum() for counts in binned.outcomes.values()) == 1000
    assert binned.outcomes["connection_reset"].sum() == 2
    assert binned.outcomes["http_status"].sum() == 2 and "timeout" not in binned.outcomes
    assert len(binned.starts_s) == 5    # 1000 requests 4 ms apart, each ending within ~0.1 s
    zero = table.measured_start_ns()
    end_bins = (table.wall_ns("end_ns") - zero) // 1_000_000_000
    ttft = table.columns["ttft_ns"]
    in_first = (end_bins == 0) & (ttft != MISSING)
    expected = [value / 1e6 for value in exact_percentiles(ttft[in_first], (50.0, 99.0))]
    assert binned.percentiles["ttft"][50.0][0] == expected[0]
    assert binned.percentiles["ttft"][99.0][0] == expected[1]


def test_an_empty_samples_file_gives_no_timeline(tmp_path):
    table = load_requests(write_samples(tmp_path / "samples.msgpack", []))
    assert len(table) == 0 and timeline(table) is None
    assert len(table.latency("itl")) == 0
    assert np.array_equal(table.latency("e2e"), np.zeros(0))
