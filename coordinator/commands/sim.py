"""`hpcbench sim`: Start the built-in inference simulator (OpenAI and Ollama APIs)."""
from hpcbench.coordinator.commands.pending import not_yet

HELP = "Start the built-in inference simulator (OpenAI and Ollama APIs)"
configure, run = not_yet("sim", 3, "executor and simulator")
