"""A trial's verdict: the rule, decided once when the trial finishes and stored in its trial.done.

A finished trial passed when nothing below is wrong; every problem found is one line of its
`problems` (the report and the CLI show them):

- its measured window broke the recipe's `workload.error_threshold`, or no measured request
  finished;
- batches an executor reported sending never arrived;
- sequence gaps opened during the trial (batches lost in transit);
- batches arrived but their raw samples could not be stored, or interval-log lines could not
  be written (disk full, say): the trial's files lack what was measured;
- an executor was lost during or before the trial (its share of the load is missing).

The verdict is never decided again from the files: a re-run of the session reads it from
trial.done, skips the trials that passed and measures the others anew (results.py keeps the
earlier attempts). Only a trial.done written before verdicts were stored (it has no `verdict`)
is judged on reading, by `judge_legacy`, from its summary.json with the same rule, as far as
that file tells.
"""
from __future__ import annotations

PASSED = "passed"
FAILED = "failed"
CUT = "cut"            # stopped mid-way: no verdict (results.py STOPPED, or no marker at all)
NOT_RUN = "not-run"    # a trial of the sweep with no attempt on disk

# integrity counters of the aggregator whose growth during a trial fails it
_INTEGRITY_PROBLEMS = {
    "missing_batches": "{} batch(es) lost in transit (sequence gaps still open at the end)",
    "unstored_batches": "{} batch(es) received but their raw samples not stored",
    "unwritten_intervals": "{} interval(s) not written to the interval log",
}


def decide(overall: dict, error_threshold: float, *, missing: dict[str, int] | None = None,
           integrity_growth: dict[str, int] | None = None,
           lost_executors: dict[str, dict] | None = None) -> dict:
    """The verdict of a finished trial from everything the session knows of it.

    `overall`: its measured statistics (summary.json `overall`); `missing`: executor -> batches
    it reported sending that never arrived; `integrity_growth`: how much each aggregator
    integrity counter grew during the trial; `lost_executors`: summary.json
    integrity.lost_executors. Returns {"verdict", "passed", "problems", "error_threshold"}."""
    problems = threshold_problems(overall, error_threshold)
    if missing:
        problems.append(f"batches never arrived: {dict(sorted(missing.items()))}")
    for counter, text in _INTEGRITY_PROBLEMS.items():
        grown = (integrity_growth or {}).get(counter, 0)
        if grown > 0:
            problems.append(text.format(grown))
    problems.extend(loss_problems(lost_executors or {}))
    return verdict_record(problems, error_threshold)


def verdict_record(problems: list[str], error_threshold: float | None) -> dict:
    return {"verdict": FAILED if problems else PASSED, "passed": not problems,
            "problems": list(problems), "error_threshold": error_threshold}


def judge_legacy(summary: dict, error_threshold: float | None) -> dict:
    """The verdict of a trial.done without one (written by an older hpcbench), from its
    summary.json: the error threshold and lost executors (what arrived late or not at all was
    not recorded per trial then)."""
    if error_threshold is None:
        return {**verdict_record(["no verdict recorded and no workload.error_threshold in its "
                                  "recipe.yaml"], None), "decided": "on reading"}
    integrity = summary.get("integrity") or {}
    problems = threshold_problems(summary["overall"], error_threshold)
    problems.extend(loss_problems(integrity.get("lost_executors") or {}))
    return {**verdict_record(problems, error_threshold), "decided": "on reading"}


def threshold_problems(overall: dict, error_threshold: float) -> list[str]:
    """Why a trial's measured window fails the recipe's limits (empty: it passes)."""
    requests, errors = overall["requests"], overall["error_total"]
    if not requests:
        return ["no measured request finished"]
    if errors / requests > error_threshold:
        return [f"error rate {errors / requests:.2%} above error_threshold "
                f"{error_threshold:.2%}"]
    return []


def loss_problems(accounts: dict[str, dict]) -> list[str]:
    """One line per lost executor for the trial's problems (the report shows them)."""
    return [f"{agent_id} lost ({account['reason']}): {account['stored']} samples stored, at "
            f"least {account['unsent_at_least']} recorded but never sent, "
            f"{account['in_flight_at_last_heartbeat']} requests in flight; intervals from its "
            f"loss on are partial" for agent_id, account in sorted(accounts.items())]
