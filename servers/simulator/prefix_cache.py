"""The simulator's prefix cache: which leading prompt tokens need no prefill, with LRU eviction.

Modelled on vLLM's automatic prefix caching: a prompt (its whitespace-separated words, the
simulator's tokens) is cut into blocks of `block_tokens`; a block is identified by its own
tokens and every token before it (a chained hash), so only a shared *prefix* can hit, and only
whole blocks are cached. A lookup counts the leading blocks already cached (a hit refreshes
them), then caches the prompt's remaining whole blocks, evicting the least recently used
blocks beyond `capacity_tokens`. As in vLLM, at least one prompt token is always computed, so
a hit covers at most prompt length - 1 tokens.

Simplification: blocks are cached when the request is admitted, not when its prefill ends, so
two identical prompts admitted together share the cache at once.
"""
from __future__ import annotations

from collections import OrderedDict


class PrefixCache:
    """An LRU set of prompt blocks, bounded in tokens."""

    def __init__(self, capacity_tokens: int, block_tokens: int) -> None:
        self.block_tokens = block_tokens
        self.capacity_blocks = capacity_tokens // block_tokens
        self.blocks: OrderedDict[int, None] = OrderedDict()

    def admit(self, tokens: list[str]) -> int:
        """Look `tokens` up, cache its whole blocks, and return how many leading tokens were
        already cached (the prefill the request is spared)."""
        size = self.block_tokens
        cached_blocks, chain, hitting = 0, 0, True
        for start in range(0, len(tokens) - size + 1, size):
            chain = hash((chain, *tokens[start:start + size]))
            if hitting and chain in self.blocks:
                self.blocks.move_to_end(chain)
                cached_blocks += 1
                continue
            hitting = False
            self._insert(chain)
        return min(cached_blocks * size, max(len(tokens) - 1, 0))

    def _insert(self, block: int) -> None:
        if self.capacity_blocks <= 0:
            return
        self.blocks[block] = None
        self.blocks.move_to_end(block)
        while len(self.blocks) > self.capacity_blocks:
            self.blocks.popitem(last=False)
