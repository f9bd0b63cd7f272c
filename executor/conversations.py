"""One conversation in progress: its script of user turns, the answers received, think times.

The engine (executor/engine.py) drives conversations: it sends turn k once turn k-1's answer
has ended and the think time after it has elapsed, with the history so far (every earlier
user message and the answer as it was received). This module holds that state and draws the
think times, so the engine's dispatch code stays about timing.
"""
from __future__ import annotations

import numpy as np

from hpcbench.executor.config import ThinkTimeSpec
from hpcbench.executor.datasets import Conversation


class Talk:
    """A conversation being held: which turn is next and what was said so far."""

    __slots__ = ("number", "script", "slot", "think_ns", "history", "turn")

    def __init__(self, number: int, script: Conversation, slot: int, think_ns: list[int]):
        self.number = number        # per executor: the sample rows' `conversation`
        self.script = script
        self.slot = slot            # closed loop: the user slot holding it; open loop: -1
        self.think_ns = think_ns    # before turns 1 .. len(script) - 1
        self.history: list[tuple[str, str]] = []
        self.turn = 0               # the turn sent last (or about to be sent)

    @property
    def turns(self) -> int:
        return len(self.script)

    def answered(self, text: str) -> bool:
        """Turn `turn` was answered with `text`: keep both for the next turn's history and
        move on; False when it was the last turn."""
        self.history.append((self.script[self.turn].text, text))
        self.turn += 1
        return self.turn < len(self.script)


def think_rng(seed: int, executor_index: int) -> np.random.Generator:
    """The think-time stream of one executor: repeatable, apart from its dataset's stream."""
    return np.random.default_rng([seed, executor_index, 1])


def think_times_ns(spec: ThinkTimeSpec, count: int, rng: np.random.Generator) -> list[int]:
    """`count` think times in ns from the spec's distribution (fixed, uniform, exponential)."""
    if spec.distribution == "uniform":
        seconds = rng.uniform(spec.min, spec.max, count)
    elif spec.distribution == "exponential":
        seconds = rng.exponential(spec.mean, count)
    else:
        seconds = np.full(count, spec.mean)
    return (seconds * 1e9).astype(np.int64).tolist()
