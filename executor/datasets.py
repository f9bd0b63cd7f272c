"""Prompt sources without downloads: synthetic, ShareGPT JSON, JSONL prompts, the bundled set.

A dataset is a list of `Prompt`s built once before the trial (seeded, so two runs with the same
seed send the same requests); the engine cycles through it. Token counts here are client-side
estimates (about 4 characters per token); the server's own counts replace them when it reports
usage (DESIGN.md section 4).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from hpcbench.common.errors import config_error
from hpcbench.executor.config import DatasetSpec, LengthSpec, SharedPrefixSpec

SYNTHETIC_POOL = 512   # distinct synthetic prompts (cycled); enough to defeat prefix caches
PREFIX_STREAM = 0x5EED   # the random stream of shared prefixes, apart from the prompts' own
# Short common words: with BPE tokenizers each is about one token plus its leading space.
WORDS = ("time", "node", "data", "model", "token", "batch", "queue", "cache", "fast", "slow",
         "graph", "value", "light", "river", "stone", "paper", "green", "small", "large", "night",
         "water", "field", "music", "plant", "story", "house", "world", "power", "state", "point",
         "order", "group", "table", "level", "color", "sound", "image", "space", "north", "south")


@dataclass(frozen=True)
class Prompt:
    text: str
    input_tokens: int            # client-side estimate
    output_tokens: int | None    # max_tokens / num_predict to request; None: server default


def estimate_tokens(text: str) -> int:
    """About four characters per token: the usual rule of thumb for English BPE vocabularies."""
    return max(1, round(len(text) / 4))


def load_dataset(spec: DatasetSpec, executor_index: int = 0) -> list[Prompt]:
    """Build the prompt list of one executor (different executors get different prompts)."""
    rng = np.random.default_rng([spec.seed, executor_index])
    if spec.kind == "synthetic":
        return _synthetic(spec, rng)
    if spec.kind == "bundled":
        texts = _jsonl_texts(resources.files("hpcbench.executor").joinpath("prompts/bundled.jsonl")
                             .read_text(encoding="utf-8"), "bundled prompt set")
    elif spec.kind == "sharegpt":
        texts = _sharegpt_texts(spec.path)
    else:
        texts = _jsonl_texts(_read(spec.path, "jsonl"), spec.path)
    order = rng.permutation(len(texts))
    lengths = (sample_lengths(spec.output_tokens, len(texts), rng)
               if spec.output_tokens is not None else None)
    prompts = []
    for position, index in enumerate(order):
        text, own_output = texts[index]
        output = int(lengths[position]) if lengths is not None else own_output
        prompts.append(Prompt(text, estimate_tokens(text), output))
    return prompts


def sample_lengths(spec: LengthSpec, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` integer lengths from a fixed / uniform / normal (clipped) distribution."""
    if spec.distribution == "fixed":
        return np.full(count, spec.mean, dtype=np.int64)
    if spec.distribution == "uniform":
        return rng.integers(spec.min, spec.max, count, endpoint=True)
    values = np.rint(rng.normal(spec.mean, spec.stddev, count))
    return np.clip(values, spec.min, spec.max).astype(np.int64)


def _synthetic(spec: DatasetSpec, rng: np.random.Generator) -> list[Prompt]:
    inputs = sample_lengths(spec.input_tokens, SYNTHETIC_POOL, rng)
    outputs = sample_lengths(spec.output_tokens or LengthSpec(), SYNTHETIC_POOL, rng)
    words = np.array(WORDS)
    prefixes = _prefix_of_each_prompt(spec, rng) if spec.shared_prefix else None
    prompts = []
    for number, (length, output) in enumerate(zip(inputs, outputs)):
        text = " ".join(words[rng.integers(0, len(words), int(length))])
        prefix = prefixes[number] if prefixes else ""
        if prefix:
            text = prefix + " " + text
            length += spec.shared_prefix.tokens    # one token per word, as the suffix
        prompts.append(Prompt(text, int(length), int(output)))
    return prompts


def shared_prefixes(spec: DatasetSpec) -> list[str]:
    """The shared prefix texts: the same for every executor of the session (seeded by the
    dataset seed and the prefix's number only), so all executors share the prefixes."""
    shared: SharedPrefixSpec = spec.shared_prefix
    words = np.array(WORDS)
    return [" ".join(words[np.random.default_rng([spec.seed, PREFIX_STREAM, group]).integers(
                0, len(words), shared.tokens)])
            for group in range(len(shared.fractions))]


def _prefix_of_each_prompt(spec: DatasetSpec, rng: np.random.Generator) -> list[str]:
    """Per prompt of the pool, its shared prefix ("" for none): round(fraction * pool) prompts
    per prefix, in a seeded random order."""
    texts = shared_prefixes(spec)
    assigned = [""] * SYNTHETIC_POOL
    start = 0
    for text, fraction in zip(texts, spec.shared_prefix.fractions):
        count = min(round(fraction * SYNTHETIC_POOL), SYNTHETIC_POOL - start)
        assigned[start:start + count] = [text] * count
        start += count
    return [assigned[index] for index in rng.permutation(SYNTHETIC_POOL)]


def _read(path: str | None, kind: str) -> str:
    if not path:
        raise config_error(f"workload.dataset.path is required for kind: {kind}")
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise config_error(f"workload.dataset.path={path!r} cannot be read: "
                           f"{error.strerror}; give an existing file") from None
    except UnicodeDecodeError:
        raise config_error(f"workload.dataset.path={path!r} is not UTF-8 text") from None


def _jsonl_texts(content: str, where: str) -> list[tuple[str, int | None]]:
    """JSONL: one object per line with "prompt" (or "text") and optional "output_tokens"."""
    texts = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            text = entry.get("prompt", entry.get("text"))
            output = entry.get("output_tokens", entry.get("max_tokens"))
        except (ValueError, AttributeError):
            text, output = None, None
        if not isinstance(text, str) or not text.strip() or not (
                output is None or (isinstance(output, int) and output >= 1)):
            raise config_error(f"{where} line {number}: expected {{\"prompt\": \"...\"}} with an "
                               "optional integer \"output_tokens\" >= 1")
        texts.append((text, output))
    if not texts:
        raise config_error(f"{where} has no prompts; add lines like {{\"prompt\": \"Hello\"}}")
    return texts


def _sharegpt_texts(path: str | None) -> list[tuple[str, int | None]]:
    """ShareGPT JSON: a list of {"conversations": [{"from": "human", "value": ...}, {"from":
    "gpt", "value": ...}, ...]}; the first human turn is the prompt, the reply sets the length."""
    try:
        entries = json.loads(_read(path, "sharegpt"))
    except ValueError as error:
        raise config_error(f"workload.dataset.path={path!r} is not valid JSON ({error})") from None
    if not isinstance(entries, list):
        raise config_error(f"{path}: a ShareGPT file is a JSON list of conversations")
    texts = []
    for entry in entries:
        turns = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(turns, list) or len(turns) < 2:
            continue
        first, reply = turns[0], turns[1]
        if not all(isinstance(turn, dict) and isinstance(turn.get("value"), str)
                   for turn in (first, reply)) or not first["value"].strip():
            continue
        texts.append((first["value"], estimate_tokens(reply["value"])))
    if not texts:
        raise config_error(f"{path} holds no usable conversation (each needs a human turn and a "
                           "reply under \"conversations\")")
    return texts
