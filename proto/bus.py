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
             snapshot   an aggregator snapshot (hpcbench.coordinator.ingest.aggregator, docs/bus.md)
             telemetry  a monitor message exactly as proto/telemetry.py defines it
             event      a lifecycle event: {"event": NAME, "session": ID, "state": STATE, ...};
                        every NAME and its fields are the `Event` enumeration below
             summary    a finished trial's summary (TrialSummary.to_dict())
"""
from __future__ import annotations

import enum

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


class Event(enum.StrEnum):
    """The lifecycle events of a session, in the order a session can send them.

    Every event's data holds `event` (the name), `session` (the session id) and `state` (the
    SessionState name when it was sent), plus the fields listed in EVENT_FIELDS."""

    STATE = "state"                       # the session entered `state`
    TRIALS = "trials"                     # the sweep is expanded
    SERVICE = "service"                   # a server was started on a node
    MONITORS_SILENT = "monitors_silent"   # monitors sent no telemetry in time; load starts anyway
    TARGETS = "targets"                   # which endpoints each executor sends to
    TRIAL_START = "trial_start"
    TRIAL_STOPPED = "trial_stopped"       # cut short by a stop: measured again on a re-run
    TRIAL_END = "trial_end"
    EXECUTOR_LOST = "executor_lost"       # its process ended or its lease ran out
    MONITOR_LOST = "monitor_lost"
    SESSION_END = "session_end"           # the last event before the bus closes


# event -> (required fields, optional fields), beyond event, session and state
EVENT_FIELDS: dict[Event, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Event.STATE: ((), ()),
    Event.TRIALS: (("total", "skipped"), ()),             # skipped: ids finished earlier
    Event.SERVICE: (("node", "argv", "url", "pid"), ()),
    Event.MONITORS_SILENT: (("nodes",), ()),
    Event.TARGETS: (("executors",), ()),                  # executor id -> list of URLs
    Event.TRIAL_START: (("trial", "index", "params"), ()),
    Event.TRIAL_STOPPED: (("trial", "reason"), ()),
    Event.TRIAL_END: (("trial", "passed", "problems"), ("probe",)),   # probe: a search's
    Event.EXECUTOR_LOST: (("agent", "reason"), ("status", "heartbeat_age_s")),
    Event.MONITOR_LOST: (("agent", "reason"), ("status", "heartbeat_age_s")),
    Event.SESSION_END: (("error",), ()),                  # error: rendered, or null
}


def event_data(event: Event, session: str, state: str, **fields) -> dict:
    """The data map of one event; BusMessageError when a field is missing or unknown, so an
    event that is sent is always one this contract documents."""
    required, optional = EVENT_FIELDS[Event(event)]
    missing = [name for name in required if name not in fields]
    unknown = [name for name in fields if name not in required and name not in optional]
    if missing or unknown:
        raise BusMessageError(f"event {event!s}: missing fields {missing}, unknown {unknown}")
    return {"event": str(event), "session": session, "state": state, **fields}


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
