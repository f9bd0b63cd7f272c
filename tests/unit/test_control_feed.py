"""The live feed behind gRPC Watch: watchers get the newest snapshot, never a backlog."""
import threading

from hpcbench.coordinator.control.feed import SessionFeed


def test_a_watcher_gets_the_newest_snapshot_then_the_end():
    feed = SessionFeed()
    for seq in range(5):
        feed.publish_snapshot({"seq": seq})
    events = feed.follow(rate_hz=1000)
    assert next(events) == ({"seq": 4}, False)      # intermediate ones are skipped
    feed.touch()
    assert next(events) == (None, False)            # a status change carries no snapshot
    feed.close()
    assert next(events) == (None, True)
    assert list(events) == []


def test_every_watcher_follows_independently_and_stops_when_told():
    feed = SessionFeed()
    feed.publish_snapshot({"seq": 1})
    active = threading.Event()
    active.set()
    first, second = feed.follow(), feed.follow(is_active=active.is_set)
    assert next(first)[0] == {"seq": 1} and next(second)[0] == {"seq": 1}
    feed.publish_snapshot({"seq": 2})
    assert next(first)[0] == {"seq": 2}
    active.clear()                                   # the gRPC client went away
    assert list(second) == []
