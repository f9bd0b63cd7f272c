"""A capacity search as the session runs it: each probe a trial, its verdict stored with it.

`CapacitySearch` turns the strategy's probes (capacity_search.py) into trials
("capacity_concurrency-8", a repeat "capacity_concurrency-8_rep-2"), judges each finished one
(probe_verdict.py, pooled with the earlier runs of its load) into the `probe` record the trial's
trial.done keeps, and gathers the search path and its answer for session.json and the report.

Resuming: `replay` walks the strategy over the probes an earlier run recorded, reading each
verdict from its trial.done (never judging it again), until it reaches a probe with no valid
verdict on disk; the session measures from there, and still takes a recorded verdict for any
later probe that has one (`take_recorded`: a recipe whose range changed can lead there).
Verdicts judged by other SLOs than the recipe's now are refused (E006), never mixed. A probe
whose measurement failed its integrity checks (lost batches, a lost executor) has no valid
verdict: the search stops there and a re-run measures it again.
"""
from __future__ import annotations

from pathlib import Path

from hpcbench.common.errors import HpcbenchError
from hpcbench.common.measure.histogram import Histogram
from hpcbench.coordinator.session import capacity_search as strategy
from hpcbench.coordinator.session import verdicts
from hpcbench.coordinator.session.probe_verdict import judge_load
from hpcbench.coordinator.session.results import read_outcome, read_summary
from hpcbench.recipes.sweep import Trial, trial_id, trial_workload

TRIAL_PREFIX = "capacity_"


class CapacitySearch:
    """The search of one session: its space, the probes so far and what they found."""

    def __init__(self, recipe):
        self.settings = recipe.data["search"]
        axis = self.settings["axis"]
        self.space = strategy.SearchSpace(
            axis=axis, low=float(self.settings["low"]), high=float(self.settings["high"]),
            resolution=float(self.settings["resolution"]), integer=axis == "concurrency",
            max_repeats=self.settings["max_repeats"])
        self._workload = recipe.workload
        self.observations: list[strategy.Observation] = []
        self.path: list[dict] = []             # per probe: trial id and its probe record
        self._runs: dict[float, list[tuple[dict, dict[str, Histogram]]]] = {}
        self._probe: strategy.Probe | None = None    # the probe of the trial handed out last
        self._measured: tuple[dict, dict[str, Histogram]] | None = None

    def next_trial(self, index: int) -> Trial | None:
        """The trial of the next probe (None: the search is over); `index` its place."""
        self._probe = strategy.next_probe(self.space, self.observations)
        if self._probe is None:
            return None
        load = self._probe.load
        params = {self.space.axis: int(load) if self.space.integer else load}
        workload = trial_workload(self._workload, params)
        workload["error_threshold"] = self.settings["max_error_rate"]
        run = self._probe.run
        return Trial(id=TRIAL_PREFIX + trial_id(params, run if run > 1 else None), index=index,
                     repetition=run, params=params, workload=workload)

    def judge(self, document: dict, histograms: dict[str, Histogram], verdict: dict) -> dict:
        """The probe record of the trial just measured (recording.finish_trial stores it in
        trial.done): the load's verdict over all its runs, and the trial's own problems that
        are not about its errors (then the verdict is not valid)."""
        probe = self._probe
        self._measured = (document["overall"], histograms)
        judged = judge_load(self.settings, [*self._runs.get(probe.load, []), self._measured])
        expected = verdicts.threshold_problems(document["overall"],
                                               self.settings["max_error_rate"])
        return {"axis": self.space.axis, "load": probe.load, "run": probe.run,
                "reason": probe.reason, **judged, "judged_by": self._judged_by(),
                "measurement_problems": [problem for problem in verdict["problems"]
                                         if problem not in expected]}

    def record(self, trial: Trial, probe: dict) -> None:
        """Add a finished probe (its record from `judge`, or as read back) to the search."""
        if probe.get("measurement_problems"):
            raise HpcbenchError("E004", f"capacity search: probe {trial.id} was not measured "
                                "soundly, so its verdict cannot steer the search",
                                (*probe["measurement_problems"],
                                 "fix: re-run with the same --session to measure it again "
                                 "(this attempt stays in its attempts/ folder)"))
        self._runs.setdefault(probe["load"], []).append(self._measured)
        self._measured = None
        self.observations.append(strategy.Observation(probe["load"], probe["meets"],
                                                      probe["close"], probe["run"]))
        self.path.append({"trial_id": trial.id, **probe})

    def replay(self, session_dir: Path) -> list[Trial]:
        """Take in the probes an earlier run of the session recorded, in the order the search
        made them; returns their trials. Stops at the first probe without a valid verdict."""
        replayed = []
        while (trial := self.next_trial(len(replayed))) is not None:
            if not self.take_recorded(session_dir, trial):
                break
            replayed.append(trial)
        self._probe = None
        return replayed

    def take_recorded(self, session_dir: Path, trial: Trial) -> bool:
        """Add the verdict an earlier run recorded for `trial` (the probe just handed out) if
        it has a valid one; False when it must be measured. E006 when that verdict was judged
        by other SLOs than the recipe's now: mixing the two would answer neither."""
        directory = Path(session_dir) / trial.id
        outcome = read_outcome(directory) or {}
        probe = outcome.get("probe")
        if outcome.get("verdict") not in (verdicts.PASSED, verdicts.FAILED) or \
                not probe or probe.get("measurement_problems"):
            return False
        judged_by, now = probe.get("judged_by"), self._judged_by()
        if judged_by != now:
            changed = sorted(key for key in now if (judged_by or {}).get(key) != now[key])
            raise HpcbenchError("E006", f"probe {trial.id} of this session was judged by other "
                                f"search settings ({', '.join(f'search.{key}' for key in changed)}"
                                ") than the recipe's now",
                                (f"recorded: {judged_by}", f"now: {now}",
                                 "fix: run the changed recipe under a new --session, or restore "
                                 "the settings to continue this search"))
        summary = read_summary(directory)
        self._measured = (summary["overall"],
                          {metric: Histogram.decode(text)
                           for metric, text in (summary.get("histograms") or {}).items()})
        self.record(trial, probe)
        return True

    def _judged_by(self) -> dict:
        """The settings a verdict depends on, stored with it (durations in seconds)."""
        return {key: self.settings[key] for key in ("slo", "max_error_rate", "confidence")}

    def result(self) -> dict:
        """The search for session.json and the report: settings, path and answer so far."""
        conclusion = strategy.conclude(self.space, self.observations)
        over = strategy.next_probe(self.space, self.observations) is None
        return {"axis": self.space.axis, "low": self.space.low, "high": self.space.high,
                "resolution": self.space.resolution, "slo": self.settings["slo"],
                "max_error_rate": self.settings["max_error_rate"],
                "confidence": self.settings["confidence"],
                "max_repeats": self.space.max_repeats,
                "finished": over, "status": conclusion.status if over else "unfinished",
                "capacity": conclusion.capacity, "lowest_missing": conclusion.lowest_missing,
                "uncertainty": conclusion.uncertainty, "notes": list(conclusion.notes),
                "probes": self.path}
