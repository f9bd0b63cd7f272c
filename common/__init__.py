"""The neutral shared base every component stands on (DESIGN.md section 1).

Errors and their codes, the session token, ZeroMQ CURVE keys and socket setup, process groups,
the timing primitives shared by the executor and the simulator (kernel-stamped sockets, the
alarm), recipe durations, the agent link executors and monitors share, and the measurement core
(`common.measure`). It imports only `hpcbench.proto`, so every image can carry it.
"""
