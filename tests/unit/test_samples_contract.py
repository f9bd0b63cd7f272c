"""The sample batch contract (proto/samples.py): round trip and rejection of bad batches."""
import msgpack
import numpy as np
import pytest

from hpcbench.proto import samples


def make_batch(n=3, chunks=(4, 1, 0)):
    cols = samples.empty_columns(n)
    cols["req_id"][:] = np.arange(n)
    cols["chunks"][:] = chunks
    cols["end_ns"][:] = [10, 20, 30]
    gaps = sum(max(c - 1, 0) for c in chunks)
    return samples.SampleBatch(run="r1", trial="t1", executor="e1", node="n1", seq=7,
                               interval=2, epoch_ns=123, columns=cols,
                               itl_ns=np.arange(gaps, dtype=np.int64) + 100)


def test_round_trip_keeps_every_column_and_gap():
    batch = make_batch()
    back = samples.decode(samples.encode(batch))
    assert back.seq == 7 and back.executor == "e1" and back.n == 3
    for name in samples.REQUEST_COLUMNS:
        np.testing.assert_array_equal(back.columns[name], batch.columns[name])
    np.testing.assert_array_equal(back.itl_ns, [100, 101, 102])
    np.testing.assert_array_equal(back.itl_offsets(), [0, 3, 3, 3])


def test_wrong_column_length_is_rejected_on_encode():
    batch = make_batch()
    batch.columns["tokens_out"] = np.zeros(2, dtype=np.int32)
    with pytest.raises(samples.SampleBatchError, match="tokens_out"):
        samples.encode(batch)


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.pop("seq"), "lacks header"),
    (lambda m: m.update(v=99), "schema version"),
    (lambda m: m.update(kind="telemetry"), "kind"),
    (lambda m: m.update(n=4), "bytes, expected"),
    (lambda m: m["cols"].pop("end_ns"), "end_ns"),
    (lambda m: m.update(itl_ns=b"\0" * 8), "gaps"),
    (lambda m: m.update(seq="7"), "integer"),
    (lambda m: m.update(run=5), "string"),
])
def test_bad_batches_name_the_problem(mutate, message):
    raw = msgpack.unpackb(samples.encode(make_batch()), raw=False)
    mutate(raw)
    with pytest.raises(samples.SampleBatchError, match=message):
        samples.decode(msgpack.packb(raw, use_bin_type=True))


def test_garbage_is_rejected_not_crashing():
    with pytest.raises(samples.SampleBatchError):
        samples.decode(b"\xc1\xff garbage")
    with pytest.raises(samples.SampleBatchError):
        samples.decode(msgpack.packb([1, 2, 3]))


def test_batch_without_the_later_columns_reads_them_as_absent():
    """An older executor's batch (or samples file) lacks the reasoning and conversation
    columns: still valid, read as no reasoning content and no conversation."""
    message = msgpack.unpackb(samples.encode(make_batch()), raw=False)
    for name in samples.OPTIONAL_COLUMNS:
        del message["cols"][name]
    back = samples.from_message(message)
    for name, absent in samples.OPTIONAL_COLUMNS.items():
        np.testing.assert_array_equal(back.columns[name], [absent] * 3)
    assert [samples.OPTIONAL_COLUMNS[name] for name in ("conversation", "turn", "turns")] \
        == [-1, -1, 0]


def test_reasoning_tokens_beyond_the_output_tokens_are_rejected():
    batch = make_batch()
    batch.columns["tokens_out"][:] = 2
    batch.columns["reasoning_tokens"][:] = [0, 2, 3]
    with pytest.raises(samples.SampleBatchError, match="reasoning_tokens"):
        samples.decode(samples.encode(batch))
