"""The rules of `workload.conversation` that span other workload keys (dataset kind, api,
batch, think-time distribution): one definition for recipe validation and the executor, which
both read a workload but may not import each other (DESIGN.md section 1, layers)."""
from __future__ import annotations

from hpcbench.common.durations import parse_duration

THINK_NEEDS = {"fixed": ("mean",), "uniform": ("min", "max"), "exponential": ("mean",)}


def conversation_problems(conversation: dict, kind: object, protocol, batch: object
                          ) -> list[tuple[str, object, str]]:
    """What `workload.conversation` contradicts elsewhere in the workload, as (field, value,
    what is expected instead): recipe validation (recipes/semantics.py) lists them all, the
    executor (executor/config.py) refuses the first. `protocol`: the workload's api (a
    WireProtocol; None: unknown here)."""
    where = "workload.conversation"
    problems = []
    if kind == "bundled":
        problems.append(("workload.dataset.kind", kind, "synthetic, sharegpt or jsonl with "
                         f"{where}: the bundled set holds single prompts, not conversations"))
    if conversation.get("turns") is not None and kind in ("sharegpt", "jsonl"):
        problems.append((f"{where}.turns", conversation["turns"],
                         f"no turns with a {kind} file, which brings its own (cap them with "
                         f"{where}.max_turns)"))
    if protocol is not None and not protocol.reads_answers:
        problems.append(("workload.api", protocol.name,
                         "openai-chat, openai-completions, ollama-chat, ollama-generate or a "
                         f"protocol plugin with answer_text: with {where} every later turn "
                         "sends the answers received back as history"))
    if isinstance(batch, int) and not isinstance(batch, bool) and batch > 1:
        problems.append(("workload.batch", batch, f"1 with {where}: a turn is one request "
                         "with its own history"))
    think = conversation.get("think_time")
    if isinstance(think, dict):
        distribution = think.get("distribution", "fixed")
        for key in THINK_NEEDS.get(distribution, ()) if isinstance(distribution, str) else ():
            if think.get(key) is None:
                problems.append((f"{where}.think_time.{key}", think.get(key),
                                 f"a duration such as \"2s\": a {distribution} think time "
                                 f"needs {' and '.join(THINK_NEEDS[distribution])}"))
        try:
            low, high = parse_duration(think.get("min")), parse_duration(think.get("max"))
        except ValueError:
            low = high = 0.0             # missing (said above) or malformed (the schema's)
        if distribution == "uniform" and high < low:
            problems.append((f"{where}.think_time.max", think.get("max"),
                             f"a duration >= min ({think.get('min')!r})"))
    return problems
