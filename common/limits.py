"""Upper bounds on every input: recipe size and shape, and every number a recipe or a CLI takes.

DESIGN.md section 8: every input has limits and gets E006, never a traceback or a hang. The
recipe schema (recipes/recipe.schema.json) writes the numeric maxima out for its messages;
tests/unit/test_fuzz_hostile_inputs.py keeps the two equal. The executor applies the same
maxima to its own CLI and to what a coordinator sends it (executor/config.py), since
`hpcbench-executor` is reachable without a recipe.

Each maximum is far above what a real benchmark asks for and low enough that every component's
arithmetic stays exact and its memory bounded:
- An open-loop schedule counts requests and nanoseconds in int64 and float64: MAX_RATE x
  (warmup + duration <= 2 x MAX_DURATION_S) is 5.2e13 requests, and 2 x MAX_DURATION_S is
  5.2e15 ns, both below 2**53 (exact in float64) and far below 2**63.
- Requests in flight at once (closed-loop slots, one burst) are bounded by MAX_IN_FLIGHT: each
  costs a connection slot and an allocation, and 1e9 of them would exhaust any executor.
- A sweep is expanded into a list of trials up front: MAX_TRIALS bounds that list.
"""
from __future__ import annotations

# ---- recipe text -----------------------------------------------------------------------------
MAX_RECIPE_BYTES = 1024 * 1024      # 1 MiB; example recipes are 1-3 KB
MAX_YAML_NODES = 100_000            # YAML nodes after alias expansion (a recipe has hundreds)
MAX_YAML_DEPTH = 64                 # nesting levels (the deepest recipe key is 5 levels down)

# ---- numbers ---------------------------------------------------------------------------------
MAX_DURATION_S = 30 * 24 * 3600     # 30 days: any duration, timeout or interval
MAX_IN_FLIGHT = 100_000             # concurrency, clients_per_node, burst_size
MIN_RATE = 0.001                    # requests/s: below it one executor's share underflows
MAX_RATE = 10_000_000               # requests/s of a whole trial
MIN_BURSTINESS = 0.01               # gamma shape: smaller ones make NaN arrival gaps
MAX_BURSTINESS = 100.0              # 100 is already nearly a constant rate
MAX_REQUESTS = 10**12               # max_requests
MAX_TOKENS = 1_000_000              # prompt/output lengths, max_tokens, token distributions
MAX_BATCH = 1024                    # prompts in one request
MAX_TURNS = 1_000                   # turns of one conversation (its history is resent each turn)
MAX_REPETITIONS = 1_000
MAX_SWEEP_VALUES = 1_000            # values in one sweep list
MAX_TRIALS = 10_000                 # sweep combinations x repetitions
MAX_NODES = 100_000                 # nodes of a job (the largest machines have ~10,000)
MAX_PER_NODE = 1_024                # executors, GPUs, parallel sizes per node
MAX_AGENTS = 3_072                  # executors + monitors on one coordinator: each holds a
                                    # control stream (and a server thread) for the session
MAX_CPUS = 65_536                   # CPUs per task / Ray CPUs per node
MAX_MEM_GB = 1_048_576              # 1 PiB per task
MAX_GPU_LAYERS = 100_000            # llama.cpp offload count (999 means "all")
MAX_MODEL_LEN = 100_000_000         # a served model's context length
MAX_SEED = 2**63 - 1                # seeds fit a signed 64-bit integer
MAX_PORT = 65_535
MAX_ENV_NUMBER = 10**18             # a number written as an environment variable's value


def describe_duration_limit() -> str:
    """How error messages and the docs name MAX_DURATION_S."""
    return f"at most {MAX_DURATION_S // 86400} days ({MAX_DURATION_S} s)"
