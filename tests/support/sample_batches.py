"""Build realistic sample batches (proto/samples.py) for aggregator, bus and results tests."""
from __future__ import annotations

import numpy as np

from hpcbench.proto.samples import ErrorClass, Phase, SampleBatch, TokenSource, empty_columns


def make_batch(seq: int = 0, n: int = 200, *, run: str = "run-1", trial: str = "t1",
               executor: str = "exec-0", chunks: int = 9, phase: Phase = Phase.MEASURED,
               errors: dict[int, ErrorClass] | None = None, slot: int = -1,
               seed: int | None = None, spacing_ns: int = 1_000_000) -> SampleBatch:
    """`n` finished requests with lognormal TTFT and ITL; row i of batch `seq` is intended at
    (seq * n + i) * spacing_ns. `errors` maps row -> error class (those rows get no tokens)."""
    rng = np.random.default_rng(seq if seed is None else seed)
    cols = empty_columns(n)
    index = np.arange(n, dtype=np.int64) + seq * n
    cols["req_id"][:] = index
    cols["intended_ns"][:] = 1_000_000_000 + index * spacing_ns
    cols["send_ns"][:] = cols["intended_ns"] + rng.integers(5_000, 200_000, n)
    cols["first_ns"][:] = cols["send_ns"] + rng.lognormal(17.5, 0.6, n).astype(np.int64)
    cols["chunks"][:] = chunks
    cols["tokens_in"][:] = 128
    cols["tokens_out"][:] = chunks
    cols["token_source"][:] = TokenSource.SERVER
    cols["status"][:] = 200
    cols["phase"][:] = phase
    cols["slot"][:] = slot
    gaps = rng.lognormal(15, 0.4, (n, max(chunks - 1, 0))).astype(np.int64)
    cols["end_ns"][:] = cols["first_ns"] + gaps.sum(axis=1)
    for row, error in (errors or {}).items():
        cols["error"][row] = error
        cols["status"][row] = 500 if error == ErrorClass.HTTP_STATUS else 0
        cols["first_ns"][row] = 0
        cols["chunks"][row] = 0
        cols["tokens_out"][row] = 0
        cols["token_source"][row] = TokenSource.NONE
    keep = cols["chunks"][:, None] > np.arange(1, max(chunks, 1))[None, :]
    itl = gaps[keep[:, :gaps.shape[1]]] if gaps.size else np.zeros(0, np.int64)
    return SampleBatch(run=run, trial=trial, executor=executor, node="node-0", seq=seq,
                       interval=seq, epoch_ns=1_700_000_000_000_000_000, columns=cols,
                       itl_ns=itl)
