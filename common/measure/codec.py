"""HdrHistogram's compressed V2 encoding of a counts array (the "HISTFAAA..." form).

Counts become zigzag LEB128 tokens (a run of zeros is one negative token), behind a payload
header (cookie, length, significant digits, lowest, highest) and zlib, behind the compressed
header; every HdrHistogram implementation reads and writes the same bytes (tests check ours
against the Python `hdrhistogram` package and the Java reference).
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from hpcbench.common.measure.buckets import HistogramConfig, HistogramError

# V2 cookies: the base values of the format with word-size nibble 0x10 ("LEB128 zigzag counts").
V2_ENCODING_COOKIE = 0x1C849303 | 0x10
V2_COMPRESSED_COOKIE = 0x1C849304 | 0x10
_COOKIE_BASE_MASK = ~0xF0
# cookie, payload length, normalizing index offset, significant digits, lowest, highest,
# integer-to-double conversion ratio; big-endian like every HdrHistogram implementation.
_PAYLOAD_HEADER = struct.Struct(">iiiiqqd")
_COMPRESSED_HEADER = struct.Struct(">ii")


def _zigzag_tokens(counts: np.ndarray) -> np.ndarray:
    """Counts as V2 tokens: a count, or -N for a run of N >= 2 zeros (a lone zero stays 0)."""
    filled = np.flatnonzero(counts)
    counts = counts[:filled[-1] + 1] if len(filled) else counts[:0]
    zero = counts == 0
    starts = np.flatnonzero(zero & ~np.concatenate(([False], zero[:-1])))
    ends = np.flatnonzero(zero & ~np.concatenate((zero[1:], [False])))
    runs = ends - starts + 1
    tokens = counts.copy()
    tokens[starts] = np.where(runs > 1, -runs, 0)
    keep = ~zero
    keep[starts] = True
    tokens = tokens[keep]
    return ((tokens << 1) ^ (tokens >> 63)).astype(np.uint64)


def _leb128(values: np.ndarray) -> bytes:
    """LEB128 of unsigned 64-bit values, HdrHistogram flavour: the 9th byte carries 8 bits."""
    shifts = np.arange(9, dtype=np.uint64) * np.uint64(7)
    parts = (values[:, None] >> shifts[None, :]) & np.uint64(0x7F)
    parts[:, 8] = values >> np.uint64(56)
    lengths = 1 + (values[:, None] >= (np.uint64(1) << shifts[None, 1:])).sum(axis=1)
    position = np.arange(9)[None, :]
    more = position < (lengths[:, None] - 1)
    parts[:, :8] |= np.where(more[:, :8], np.uint64(0x80), np.uint64(0))
    return parts.astype(np.uint8)[position < lengths[:, None]].tobytes()


def encode_counts(config: HistogramConfig, counts: np.ndarray) -> bytes:
    """Compressed V2 bytes (before base64) of a counts array of `config`'s layout."""
    payload = _leb128(_zigzag_tokens(counts))
    header = _PAYLOAD_HEADER.pack(V2_ENCODING_COOKIE, len(payload), 0, config.significant_digits,
                                  config.lowest, config.highest, 1.0)
    compressed = zlib.compress(header + payload)
    return _COMPRESSED_HEADER.pack(V2_COMPRESSED_COOKIE, len(compressed)) + compressed


def _read_leb128(payload: bytes) -> np.ndarray:
    """Signed tokens from zigzag LEB128 bytes (counts below 2**62, i.e. every real histogram)."""
    raw = np.frombuffer(payload, dtype=np.uint8)
    if len(raw) == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(raw < 0x80)
    if len(ends) == 0 or ends[-1] != len(raw) - 1:
        raise HistogramError("encoded histogram ends inside a number")
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 9:
        raise HistogramError("encoded histogram holds a number longer than 9 bytes")
    position = np.arange(len(raw)) - np.repeat(starts, lengths)
    shifted = (raw & 0x7F).astype(np.uint64) << (position.astype(np.uint64) * np.uint64(7))
    zigzag = np.add.reduceat(shifted, starts)
    return (zigzag >> np.uint64(1)).astype(np.int64) ^ -(zigzag & np.uint64(1)).astype(np.int64)


def decode_counts(data: bytes) -> tuple[HistogramConfig, np.ndarray]:
    """(config, counts) from compressed V2 bytes; HistogramError names what is wrong."""
    if len(data) < _COMPRESSED_HEADER.size:
        raise HistogramError("encoded histogram is shorter than its header")
    cookie, length = _COMPRESSED_HEADER.unpack_from(data)
    if cookie & _COOKIE_BASE_MASK != V2_COMPRESSED_COOKIE & _COOKIE_BASE_MASK:
        raise HistogramError(f"not a compressed V2 histogram (cookie {cookie:#x})")
    try:
        inner = zlib.decompress(data[_COMPRESSED_HEADER.size:_COMPRESSED_HEADER.size + length])
    except zlib.error as error:
        raise HistogramError(f"encoded histogram does not inflate: {error}") from None
    if len(inner) < _PAYLOAD_HEADER.size:
        raise HistogramError("encoded histogram payload is shorter than its header")
    (cookie, payload_len, offset, digits, lowest, highest,
     _ratio) = _PAYLOAD_HEADER.unpack_from(inner)
    if cookie & _COOKIE_BASE_MASK != V2_ENCODING_COOKIE & _COOKIE_BASE_MASK:
        raise HistogramError(f"not a V2 histogram payload (cookie {cookie:#x})")
    if offset != 0:
        raise HistogramError("histograms with a normalizing index offset are not supported")
    try:
        config = HistogramConfig(int(lowest), int(highest), int(digits))
    except Exception as error:
        raise HistogramError(f"encoded histogram has an unusable configuration: {error}") from None
    tokens = _read_leb128(inner[_PAYLOAD_HEADER.size:_PAYLOAD_HEADER.size + payload_len])
    counts = np.repeat(np.maximum(tokens, 0), np.where(tokens < 0, -tokens, 1))
    if len(counts) > config.counts_len:
        raise HistogramError(f"encoded histogram has {len(counts)} buckets, its configuration "
                             f"allows {config.counts_len}")
    return config, counts
