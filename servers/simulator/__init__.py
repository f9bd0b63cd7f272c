"""The built-in inference simulator: OpenAI and Ollama APIs with a realistic timing model,
fault injection and ground truth of every token write (see docs/simulator.md).

    from hpcbench.servers.simulator import SimulatorConfig, start_simulator
    with start_simulator(SimulatorConfig(mode="fixed", ttft_ms=5, itl_ms=1)) as sim:
        ...  # sim.url, sim.port, sim.served, sim.truth (with record_truth=True)
"""
from hpcbench.servers.simulator.config import SimulatorConfig
from hpcbench.servers.simulator.server import SimulatorHandle, serve, start_simulator

__all__ = ["SimulatorConfig", "SimulatorHandle", "serve", "start_simulator"]
