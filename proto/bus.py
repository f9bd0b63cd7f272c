"""The metrics bus contract: what the coordinator publishes (ZeroMQ PUB) and any subscriber reads.

Every message is two frames: the topic (UTF-8, the SUB filter matches on it) and a msgpack map:
    v        schema version (SCHEMA_VERSION)
    topic    the topic again (so a stored message explains itself)
    seq      0, 1, 2, ... per topic for the life of the publisher: a subscriber sees what it missed
    run      run id (session id)
    ts_ns    wall-clock publish time, time.time_ns()
    replay   true when re-sent from the last-value cache to a subscriber that just joined
             (its `seq` is the original one, so a subscriber skips replays it has already seen)
    data     the payload, per topic:
             snapshot   an aggregator snapshot (hpcbench.coordinator.ingest.aggregator, README "bus")
             telemetry  a monitor message exactly as proto/telemetry.py defines it
             event      a lifecycle event: {"event": name, ...}, e.g. {"event": "phase",
                        "phase": "warmup", "trial": "t1"}; names in README "bus"
             summary    a finished trial's summary (TrialSummary.to_dict())
"""
from __future__ import annotations

import msgpack

SCHEMA_VERSION = 1
SNAPSHOT = "snapshot"
TELEMETRY = "telemetry"
EVENT = "event"
SUMMARY = "summary"
TOPICS = (SNAPSHOT, TELEMETRY, EVENT, SUMMARY)
FIELDS = ("v", "topic", "seq", "run", "ts_ns", "replay", "data")


class BusMessageError(ValueError):
    """Frames that are not a bus message of this schema version."""


def pack(topic: str, seq: int, run: str, ts_ns: int, data: object,
         replay: bool = False) -> list[bytes]:
    """The two frames of one message."""
    if topic not in TOPICS:
        raise BusMessageError(f"topic {topic!r} is not one of {TOPICS}")
    body = {"v": SCHEMA_VERSION, "topic": topic, "seq": seq, "run": run, "ts_ns": ts_ns,
            "replay": replay, "data": data}
    return [topic.encode(), msgpack.packb(body, use_bin_type=True)]


def as_replay(frames: list[bytes]) -> list[bytes]:
    """The same message marked as a last-value-cache replay."""
    body = msgpack.unpackb(frames[1], raw=False)
    body["replay"] = True
    return [frames[0], msgpack.packb(body, use_bin_type=True)]


def unpack(frames: list[bytes]) -> dict:
    """The message map from received frames; BusMessageError if they break the contract."""
    if len(frames) != 2:
        raise BusMessageError(f"a bus message has 2 frames, got {len(frames)}")
    try:
        body = msgpack.unpackb(frames[1], raw=False)
    except Exception as error:  # msgpack raises several unrelated types on garbage
        raise BusMessageError(f"bus message body is not msgpack: {error}") from None
    if not isinstance(body, dict) or any(field not in body for field in FIELDS):
        raise BusMessageError(f"bus message must be a map with fields {FIELDS}")
    if body["v"] != SCHEMA_VERSION:
        raise BusMessageError(f"bus schema version {body['v']!r} is not {SCHEMA_VERSION}; "
                              "upgrade the subscriber or the coordinator so they match")
    if body["topic"].encode() != frames[0]:
        raise BusMessageError(f"topic frame {frames[0]!r} disagrees with body {body['topic']!r}")
    return body
