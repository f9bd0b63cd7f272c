"""Sequence numbers of one (run, executor) stream: gaps, late arrivals and duplicates.

Every sample batch carries seq 0, 1, 2, ... per (run, executor) (proto/samples.py), so the
aggregator can tell a lost batch (a gap that stays open), a late one (fills a gap) and a
re-sent one (a duplicate, which must not be counted twice).
"""
from __future__ import annotations


class SequenceTracker:
    """Sequence numbers seen from one (run, executor): gaps, late arrivals and duplicates."""

    def __init__(self):
        self.next_seq = 0
        self.missing: list[tuple[int, int]] = []  # [start, end) ranges not yet received
        self.duplicates = 0
        self.late = 0

    def accept(self, seq: int) -> bool:
        """True for a new batch; False for a duplicate (which must not be counted again)."""
        if seq >= self.next_seq:
            if seq > self.next_seq:
                self.missing.append((self.next_seq, seq))
            self.next_seq = seq + 1
            return True
        for position, (start, end) in enumerate(self.missing):
            if start <= seq < end:
                pieces = [piece for piece in ((start, seq), (seq + 1, end)) if piece[0] < piece[1]]
                self.missing[position:position + 1] = pieces
                self.late += 1
                return True
        self.duplicates += 1
        return False

    @property
    def gaps(self) -> int:
        """Batches still missing."""
        return sum(end - start for start, end in self.missing)
