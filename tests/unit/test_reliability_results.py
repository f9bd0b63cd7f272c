"""Damaged results on disk: a truncated or corrupted samples file is reported as damaged, never
read as a shorter, plausible trial (that would lose samples silently)."""
from __future__ import annotations

import pytest

from hpcbench.coordinator.session.results import read_samples
from hpcbench.proto import samples
from tests.support.faults import record
from tests.support.sample_batches import make_batch


def write_batches(path, count=3):
    payloads = [samples.encode(make_batch(seq, n=5)) for seq in range(count)]
    path.write_bytes(b"".join(payloads))
    return payloads


def test_a_whole_samples_file_reads_back_completely(tmp_path):
    path = tmp_path / "samples.msgpack"
    write_batches(path)
    assert [batch.seq for batch in read_samples(path)] == [0, 1, 2]


@pytest.mark.parametrize("cut", [1, 7, 100])
def test_a_truncated_samples_file_is_an_error_naming_it(tmp_path, cut):
    path = tmp_path / "samples.msgpack"
    payloads = write_batches(path)
    path.write_bytes(path.read_bytes()[:-cut])
    record("bad_inputs")
    with pytest.raises(samples.SampleBatchError) as caught:
        list(read_samples(path))
    assert str(path) in str(caught.value) and "truncated" in str(caught.value)
    assert len(payloads) == 3
