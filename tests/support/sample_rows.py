"""Sample batches read back as columns: the measured rows of a run, for tests and benches."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from hpcbench.proto.samples import Phase, SampleBatch


def measured_rows(batches: Iterable[SampleBatch]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Concatenated MEASURED rows and their ITL gaps."""
    columns: dict[str, list] = {}
    gaps = []
    for batch in batches:
        keep = batch.columns["phase"] == Phase.MEASURED
        offsets = batch.itl_offsets()
        for index in np.flatnonzero(keep):
            gaps.append(batch.itl_ns[offsets[index]:offsets[index + 1]])
        for name, column in batch.columns.items():
            columns.setdefault(name, []).append(column[keep])
    merged = {name: np.concatenate(parts) for name, parts in columns.items()}
    return merged, (np.concatenate(gaps) if gaps else np.zeros(0, dtype=np.int64))
