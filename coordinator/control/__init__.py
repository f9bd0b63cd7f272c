"""Control plane: the coordinator's gRPC server (Control for tools, Agent for executors and
monitors), the agent registry, the client the CLI uses, live feeds, and the daemon."""
