"""The `hpcbench create` wizard: questions in the seed's order (service, scenario, nodes,
resources, workload, containers), each answerable on stdin or by a `--flag`, then one recipe.

Every answer goes through the same parser whether typed or given as a flag, so a flag gets the
same clear error as a typed answer; the finished recipe is validated before it is written.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from hpcbench.common.durations import parse_duration

SERVICES = ("simulator", "ollama", "vllm", "vllm-distributed", "llamacpp")
DEFAULT_MODELS = {"simulator": "sim-llama", "ollama": "llama3.2:1b",
                  "vllm": "meta-llama/Llama-3.1-8B-Instruct",
                  "vllm-distributed": "meta-llama/Llama-3.1-70B-Instruct", "llamacpp": "model"}
GPU_SERVICES = ("ollama", "vllm", "vllm-distributed")


@dataclass(frozen=True)
class Question:
    """One wizard step; `key` is the answer's name and, dashed, its flag (--client-nodes)."""

    key: str
    prompt: str
    default: Callable[[dict], object]
    parse: Callable[[str, dict], object]
    when: Callable[[dict], bool] = lambda answers: True

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


def _choice(*choices: str) -> Callable[[str, dict], str]:
    def parse(text: str, answers: dict) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text
    return parse


def _positive_int(text: str, answers: dict) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} is not a positive integer")
    return int(text)


def _gpus(text: str, answers: dict) -> int:
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a GPU count (an integer >= 0)")
    return int(text)


def _duration(text: str, answers: dict) -> str | float:
    parse_duration(text)  # raises ValueError naming the accepted forms
    return text


def _name(text: str, answers: dict) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise ValueError(f"{text!r}: use letters, digits, '.', '_' or '-'")
    return text


def _text(text: str, answers: dict) -> str:
    if not text.strip():
        raise ValueError("an answer is required")
    return text.strip()


def _partition(text: str, answers: dict) -> str:
    if answers.get("gpus", 0) > 0 and "gpu" not in text.lower():
        raise ValueError(f"{text!r}: servers use {answers['gpus']} GPU(s), so pick a GPU "
                         f"partition (its name contains 'gpu')")
    return _text(text, answers)


def _time_limit(text: str, answers: dict) -> str:
    if not re.fullmatch(r"(\d+-)?\d+(:\d{2}){0,2}", text):
        raise ValueError(f"{text!r} is not a Slurm time limit such as 01:00:00 or 1-00:00:00")
    return text


def _sif(text: str, answers: dict) -> str:
    if not text.endswith(".sif"):
        raise ValueError(f"{text!r}: an Apptainer image path must end in .sif")
    return text


def _sweep(text: str, answers: dict) -> list[int] | None:
    if text.lower() in ("", "none"):
        return None
    values = [part.strip() for part in text.split(",")]
    if not all(value.isdigit() and int(value) >= 1 for value in values):
        raise ValueError(f"{text!r}: give positive integers separated by commas, e.g. 1,4,16")
    if len(set(values)) != len(values):
        raise ValueError(f"{text!r}: each value once")
    return [int(value) for value in values]


def _on_slurm(answers: dict) -> bool:
    return answers.get("mode") == "slurm"


def _service(answers: dict) -> str:
    return answers.get("service", "simulator")


QUESTIONS: tuple[Question, ...] = (
    Question("service", f"Service ({', '.join(SERVICES)})", lambda a: "simulator",
             _choice(*SERVICES)),
    Question("scenario", "Scenario name", lambda a: f"{_service(a)}-bench", _name),
    Question("model", "Model", lambda a: DEFAULT_MODELS[_service(a)], _text),
    Question("model_path", "GGUF model file", lambda a: "models/model.gguf", _text,
             lambda a: _service(a) == "llamacpp"),
    Question("mode", "Where to run (local, slurm)",
             lambda a: "slurm" if _service(a) == "vllm-distributed" else "local",
             _choice("local", "slurm")),
    Question("server_nodes", "Server nodes",
             lambda a: 2 if _service(a) == "vllm-distributed" else 1, _positive_int, _on_slurm),
    Question("client_nodes", "Client nodes", lambda a: 1, _positive_int, _on_slurm),
    Question("gpus", "GPUs per server node",
             lambda a: (2 if _service(a) == "vllm-distributed" else 1)
             if _service(a) in GPU_SERVICES else 0, _gpus, _on_slurm),
    Question("partition", "Slurm partition", lambda a: "gpu" if a.get("gpus") else "cpu",
             _partition, _on_slurm),
    Question("account", "Slurm account (project)", lambda a: None, _text, _on_slurm),
    Question("time_limit", "Job time limit (HH:MM:SS)", lambda a: "01:00:00", _time_limit,
             _on_slurm),
    Question("image", "Service container image (.sif)",
             lambda a: f"{_service(a).split('-')[0]}_latest.sif", _sif,
             lambda a: _on_slurm(a) and _service(a) != "simulator"),
    Question("tensor_parallel", "Tensor parallel size",
             lambda a: max(1, a.get("gpus", 1) * (a.get("server_nodes", 1)
                                                 if _service(a) == "vllm-distributed" else 1)),
             _positive_int, lambda a: _service(a).startswith("vllm")),
    Question("clients_per_node", "Concurrent streams per client node", lambda a: 8, _positive_int),
    Question("concurrency", "Total concurrency sweep, e.g. 1,4,16 (empty: none)",
             lambda a: None, _sweep),
    Question("pattern", "Load pattern (closed, constant, poisson)", lambda a: "closed",
             _choice("closed", "constant", "poisson")),
    Question("rate", "Requests per second (all clients)", lambda a: 10, _positive_int,
             lambda a: a.get("pattern") in ("constant", "poisson")),
    Question("duration", "Measured duration per trial", lambda a: "60s", _duration),
    Question("warmup", "Warmup before each trial", lambda a: "10s", _duration),
    Question("prompt_len", "Prompt length (tokens)", lambda a: 128, _positive_int),
    Question("output_len", "Output length (tokens)", lambda a: 128, _positive_int),
)


def answer_all(given: dict[str, str], ask: Callable[[Question, object], str] | None) -> dict:
    """Answers for every question that applies: flags in `given` first, then `ask` (None: take
    defaults). A bad or inapplicable flag, or a missing required answer without `ask`, raises
    ValueError listing every such problem; a bad typed answer is asked again."""
    answers: dict = {}
    problems = []
    for question in QUESTIONS:
        if not question.when(answers):
            continue
        default = question.default(answers)
        if given.get(question.key) is not None:
            try:
                answers[question.key] = question.parse(given[question.key], answers)
            except ValueError as error:
                problems.append(f"{question.flag}: {error}")
                answers[question.key] = default
            continue
        if ask is None:
            if default is None and question.parse is _text:
                problems.append(f"{question.flag}: required ({question.prompt})")
            answers[question.key] = default
            continue
        answers[question.key] = _ask_until_valid(question, default, answers, ask)
    problems += [f"{question.flag}: does not apply to these answers (e.g. Slurm settings need "
                 f"--mode slurm); leave it out" for question in QUESTIONS
                 if given.get(question.key) is not None and question.key not in answers]
    if problems:
        raise ValueError("\n".join(problems))
    return answers


def _ask_until_valid(question: Question, default: object, answers: dict,
                     ask: Callable[[Question, object], str]) -> object:
    while True:
        text = ask(question, default).strip()
        if not text and default is not None:
            return default
        try:
            return question.parse(text, answers)
        except ValueError as error:
            print(f"  {error}")


def build_recipe(answers: dict) -> dict:
    """The recipe dict the answers describe."""
    service = answers["service"]
    distributed = service == "vllm-distributed"
    workload: dict = {
        "service": "vllm" if distributed else service,
        "model": answers["model"],
        "duration": answers["duration"],
        "warmup": answers["warmup"],
        "clients_per_node": answers["clients_per_node"],
        "load": {"pattern": answers["pattern"]},
        "dataset": {"input_tokens": {"distribution": "fixed", "mean": answers["prompt_len"]},
                    "output_tokens": {"distribution": "fixed", "mean": answers["output_len"]}},
    }
    if answers.get("concurrency"):
        workload["concurrency"] = answers["concurrency"]
    if answers.get("rate"):
        workload["load"]["rate"] = answers["rate"]
    recipe: dict = {"scenario": answers["scenario"]}
    service_config: dict = {}
    if service == "llamacpp":
        service_config["model_path"] = answers["model_path"]
    if service.startswith("vllm") and answers["tensor_parallel"] > 1:
        if distributed:
            service_config["distributed"] = {"enabled": True, "backend": "ray",
                                             "tensor_parallel_size": answers["tensor_parallel"],
                                             "pipeline_parallel_size": 1}
        else:
            service_config["tensor_parallel_size"] = answers["tensor_parallel"]
    elif distributed:
        service_config["distributed"] = {"enabled": True, "backend": "ray"}
    if answers["mode"] == "slurm":
        servers, clients = answers["server_nodes"], answers["client_nodes"]
        recipe.update({"partition": answers["partition"], "account": answers["account"],
                       "modules": ["Apptainer"]})
        recipe["orchestration"] = {
            "mode": "slurm", "total_nodes": servers + clients,
            "node_allocation": {"servers": {"nodes": servers}, "clients": {"nodes": clients}},
            "job_config": {"time_limit": answers["time_limit"], "exclusive": True}}
        recipe["resources"] = {"servers": {"gpus": answers["gpus"]}}
        if "image" in answers:
            recipe["artifacts"] = {"service": {"path": answers["image"]}}
    else:
        recipe["runtime"] = "process"
        recipe["orchestration"] = {"mode": "local"}
        if service.startswith("vllm") and answers["tensor_parallel"] > 1:
            recipe["resources"] = {"servers": {"gpus": answers["tensor_parallel"]}}
    recipe["workload"] = workload
    if service_config:
        recipe["servers"] = {"service_config": service_config}
    return recipe
