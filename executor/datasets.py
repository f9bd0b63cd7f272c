"""Prompt sources without downloads: synthetic, ShareGPT JSON, JSONL prompts, the bundled set.

A dataset is a list of `Prompt`s built once before the trial (seeded, so two runs with the same
seed send the same requests); the engine cycles through it. In multi-turn mode
(`workload.conversation`) it is a list of conversations instead (`load_conversations`): each
a tuple of user turns, whose answers come from the server under test, not from the file.
Token counts here are client-side estimates (about 4 characters per token); the server's own
counts replace them when it reports usage (DESIGN.md section 4).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from hpcbench.common.errors import config_error
from hpcbench.executor.config import ConversationSpec, DatasetSpec, LengthSpec, SharedPrefixSpec

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


Conversation = tuple[Prompt, ...]    # the user's turns, in order; output_tokens per answer
# ShareGPT's speakers: the user's turns and the answers (whose lengths set the turns' outputs)
USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "chatgpt", "assistant", "bard", "bing", "model"})


def load_conversations(spec: DatasetSpec, conversation: ConversationSpec,
                       executor_index: int = 0) -> list[Conversation]:
    """The conversations of one executor, in a seeded order, each cut to `max_turns`. The
    recipe's output_tokens (when given) replace the dataset's own answer lengths, as for
    single prompts."""
    rng = np.random.default_rng([spec.seed, executor_index])
    if spec.kind == "synthetic":
        return _synthetic_conversations(spec, conversation, rng)
    if spec.kind == "sharegpt":
        scripts = _sharegpt_conversations(spec.path)
    elif spec.kind == "jsonl":
        scripts = _jsonl_conversations(_read(spec.path, "jsonl"), spec.path)
    else:
        raise config_error(f"workload.dataset.kind={spec.kind!r} holds no conversations; use "
                           "synthetic, sharegpt or jsonl")
    scripts = [script[:conversation.max_turns] for script in scripts]
    conversations = []
    for index in rng.permutation(len(scripts)):
        script = scripts[index]
        if spec.output_tokens is not None:
            lengths = sample_lengths(spec.output_tokens, len(script), rng)
            script = tuple(Prompt(turn.text, turn.input_tokens, int(length))
                           for turn, length in zip(script, lengths))
        conversations.append(script)
    return conversations


def _synthetic_conversations(spec: DatasetSpec, conversation: ConversationSpec,
                             rng: np.random.Generator) -> list[Conversation]:
    counts = np.minimum(sample_lengths(conversation.turns, SYNTHETIC_POOL, rng),
                        conversation.max_turns)
    turns = _synthetic(spec, rng, int(counts.sum()))
    ends = np.cumsum(counts)
    return [tuple(turns[end - count:end]) for count, end in zip(counts, ends)]


def _jsonl_conversations(content: str, where: str) -> list[Conversation]:
    """JSONL: one conversation per line, {"turns": [...]} where each turn is the user's text or
    {"prompt": "...", "output_tokens": N} (output_tokens optional)."""
    conversations = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            turns = json.loads(line).get("turns")
        except (ValueError, AttributeError):
            turns = None
        script = [_jsonl_turn(turn) for turn in turns] if isinstance(turns, list) else []
        if not script or None in script:
            raise config_error(f"{where} line {number}: expected {{\"turns\": [...]}} with at "
                               "least one turn, each a non-empty string or {\"prompt\": "
                               "\"...\", \"output_tokens\": N} (N an integer >= 1, optional)")
        conversations.append(tuple(script))
    if not conversations:
        raise config_error(f"{where} has no conversations; add lines like "
                           "{\"turns\": [\"Hello\", \"And then?\"]}")
    return conversations


def _jsonl_turn(turn: object) -> Prompt | None:
    """One user turn of a JSONL conversation; None when it is malformed."""
    text, output = (turn, None) if isinstance(turn, str) else (
        (turn.get("prompt", turn.get("text")), turn.get("output_tokens"))
        if isinstance(turn, dict) else (None, None))
    if not isinstance(text, str) or not text.strip() or not (
            output is None or (isinstance(output, int) and not isinstance(output, bool)
                               and output >= 1)):
        return None
    return Prompt(text, estimate_tokens(text), output)


def _sharegpt_conversations(path: str | None) -> list[Conversation]:
    """ShareGPT: each human message is a turn, the reply after it sets its output length (a
    last human message without a reply asks for the server's default). A system message is
    skipped; the conversation ends where the speakers stop alternating."""
    conversations = []
    for turns in _sharegpt_entries(path):
        script: list[Prompt] = []
        expect_user = True
        for turn in turns:
            role = turn.get("from") if isinstance(turn, dict) else None
            value = turn.get("value") if isinstance(turn, dict) else None
            if role == "system" and not script:
                continue
            if not isinstance(value, str) or \
                    (role not in USER_ROLES if expect_user else role not in ASSISTANT_ROLES):
                break
            if expect_user:
                if not value.strip():
                    break
                script.append(Prompt(value, estimate_tokens(value), None))
            else:
                script[-1] = Prompt(script[-1].text, script[-1].input_tokens,
                                    estimate_tokens(value))
            expect_user = not expect_user
        if script:
            conversations.append(tuple(script))
    if not conversations:
        raise config_error(f"{path} holds no usable conversation (each needs a first human "
                           "turn under \"conversations\")")
    return conversations


def sample_lengths(spec: LengthSpec, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` integer lengths from a fixed / uniform / normal (clipped) distribution."""
    if spec.distribution == "fixed":
        return np.full(count, spec.mean, dtype=np.int64)
    if spec.distribution == "uniform":
        return rng.integers(spec.min, spec.max, count, endpoint=True)
    values = np.rint(rng.normal(spec.mean, spec.stddev, count))
    return np.clip(values, spec.min, spec.max).astype(np.int64)


def _synthetic(spec: DatasetSpec, rng: np.random.Generator,
               count: int = SYNTHETIC_POOL) -> list[Prompt]:
    inputs = sample_lengths(spec.input_tokens, count, rng)
    outputs = sample_lengths(spec.output_tokens or LengthSpec(), count, rng)
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
    texts = []
    for turns in _sharegpt_entries(path):
        if len(turns) < 2:
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


def _sharegpt_entries(path: str | None) -> list[list]:
    """The `conversations` lists of a ShareGPT JSON file (entries without one are skipped)."""
    try:
        entries = json.loads(_read(path, "sharegpt"))
    except ValueError as error:
        raise config_error(f"workload.dataset.path={path!r} is not valid JSON ({error})") from None
    if not isinstance(entries, list):
        raise config_error(f"{path}: a ShareGPT file is a JSON list of conversations")
    return [entry["conversations"] for entry in entries
            if isinstance(entry, dict) and isinstance(entry.get("conversations"), list)]
