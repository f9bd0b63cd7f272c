"""`make reliability`: run the reliability, fuzzing and security suites and print their figures.

Figures (JSON on stdout): faults injected, bad inputs tried, samples produced vs accounted
(stored or counted with a reason), sample-endpoint messages sent vs accounted, re-run verdicts
(session re-runs, failed trials measured again, earlier attempts kept, failed trials that came
back passed without a new attempt), forged and foreign input (batches sent and accepted, the
coordinator's memory growth under a flood, tokenless streams refused while the session's own
calls are answered), and leftover processes. The tests add to the figures
through tests.support.faults.record; every process the suites start inherits a marker in its
environment, so after the run any process still carrying it is a leftover, whoever its parent
became. A test that kills a parent and finds its children still running after a bounded wait
(tests/integration/test_reliability_orphans.py) records them as `leftover_processes` before it
kills them itself; they count here too. Exit status: pytest's, or 1 when a figure is wrong
(leftovers, samples/messages that were not accounted for, or a failed trial relabelled passed).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITES = ("test_reliability*.py", "test_fuzz*.py", "test_security*.py")
MARKER_ENV = "HPCBENCH_RELIABILITY_RUN"


def marked_processes(marker: str) -> list[int]:
    """Live processes whose environment carries MARKER_ENV=marker (Linux /proc)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def main(argv: list[str]) -> int:
    import pytest

    from tests.support.faults import FIGURES_ENV

    # the suites live in the kind folders (tests/unit, tests/integration, tests/cluster)
    files = sorted(str(path) for pattern in SUITES for path in (REPO / "tests").glob(f"*/{pattern}"))
    marker = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="hpcbench-reliability-") as scratch:
        figures_path = Path(scratch) / "figures.jsonl"
        os.environ[FIGURES_ENV] = str(figures_path)
        os.environ[MARKER_ENV] = marker
        status = pytest.main(["-q", "-p", "no:cacheprovider", *files, *argv])
        totals: Counter = Counter()
        if figures_path.exists():
            for line in figures_path.read_text().splitlines():
                totals.update(json.loads(line))
    from tests.support.waiting import WaitTimeout, wait_until

    try:   # components get a moment to finish exiting after their test's teardown
        wait_until(lambda: not marked_processes(marker), timeout=10, what="no leftovers")
    except WaitTimeout:
        pass
    leftovers = marked_processes(marker)
    report = {
        "suites": [Path(name).name for name in files],
        "pytest_exit_status": int(status),
        "faults_injected": totals["faults_injected"],
        "bad_inputs_tried": totals["bad_inputs"],
        "samples_produced": totals["samples_produced"],
        "samples_accounted": totals["samples_accounted"],
        "messages_sent": totals["messages_sent"],
        "messages_accounted": totals["messages_accounted"],
        "rerun_verdicts": {
            "reruns": totals["reruns"],
            "trials_remeasured": totals["trials_remeasured"],
            "earlier_attempts_kept": totals["earlier_attempts_kept"],
            "failed_relabelled_passed": totals["failed_relabelled_passed"],
        },
        "forged_and_foreign": {
            "forged_batches_sent": totals["forged_batches_sent"],
            "forged_batches_accepted": totals["forged_batches_accepted"],
            "flood_rss_growth_mb": totals["flood_rss_growth_mb"],
            "tokenless_streams_refused": totals["tokenless_streams_refused"],
            "status_calls_answered_during_flood": totals["status_calls_during_flood"],
        },
        "leftover_processes": len(leftovers) + totals["leftover_processes"],
    }
    print(json.dumps(report, indent=2))
    if status != 0:
        return int(status)
    balanced = (report["samples_produced"] == report["samples_accounted"]
                and report["messages_sent"] == report["messages_accounted"]
                and report["rerun_verdicts"]["failed_relabelled_passed"] == 0
                and report["forged_and_foreign"]["forged_batches_accepted"] == 0)
    return 0 if balanced and not report["leftover_processes"] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
