"""Redis: proof that a service need not speak HTTP. `redis-server` on the node's address,
health is a RESP `PING` answered `+PONG`, and the executor speaks RESP (api "resp").

service_config: any redis-server option (`maxmemory: 100mb` -> `--maxmemory 100mb`), `env`.
Persistence is off by default (`--save "" --appendonly no`) so a benchmark leaves no files.
The server's version is `redis_version` of `INFO server`.
"""
from __future__ import annotations

import socket

from hpcbench.common.errors import HpcbenchError
from hpcbench.servers.plugin import LaunchContext, LaunchSpec, ServicePlugin, cli_flags, extra_env, poll_until
from hpcbench.servers.runtime import wrap

PING = b"*1\r\n$4\r\nPING\r\n"
INFO_SERVER = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
OWN_KEYS = ("port", "env")


def split_url(base_url: str) -> tuple[str, int]:
    """redis://HOST:PORT -> (HOST, PORT)."""
    host, _, port = base_url.removeprefix("redis://").rstrip("/").rpartition(":")
    return host, int(port)


def ping(base_url: str, timeout_s: float) -> str | None:
    """None when the server answers +PONG, else what went wrong."""
    try:
        with socket.create_connection(split_url(base_url), timeout=timeout_s) as conn:
            conn.sendall(PING)
            reply = conn.recv(256)
    except OSError as error:
        return f"PING {base_url}: {error}"
    return None if reply.startswith(b"+PONG") else f"PING {base_url}: replied {reply[:80]!r}"


class RedisService(ServicePlugin):
    name = "redis"
    default_port = 6379
    api = "resp"
    metrics_path = None

    def launch(self, ctx: LaunchContext) -> LaunchSpec:
        options = {"save": "", "appendonly": "no", **ctx.service_config}
        argv = ["redis-server", "--bind", ctx.address, "--port", str(ctx.port),
                *cli_flags(options, skip=OWN_KEYS)]
        return LaunchSpec(argv=wrap(argv, ctx.runtime, ctx.artifacts, ctx.binds, gpus=False),
                          env=extra_env(ctx.service_config),
                          base_url=f"redis://{ctx.address}:{ctx.port}")

    def wait_healthy(self, base_url: str, timeout_s: float, interval_s: float = 0.5) -> None:
        reason = poll_until(lambda: ping(base_url, max(1.0, interval_s)), timeout_s, interval_s)
        if reason is not None:
            raise HpcbenchError("E001", f"redis at {base_url} not healthy after {timeout_s:g}s",
                                (f"last check: {reason}",
                                 "fix: look at the redis-server log in the run directory"))

    def prepare(self, base_url: str, model: str | None, timeout_s: float,
                service_config: dict | None = None) -> None:
        """Nothing to load; a failing PING here means the server went away after health."""
        reason = ping(base_url, timeout_s)
        if reason is not None:
            raise HpcbenchError("E003", f"redis at {base_url} stopped answering: {reason}",
                                ("fix: look at the redis-server log in the run directory",))

    def server_version(self, base_url: str, timeout_s: float) -> str | None:
        """`redis_version` from `INFO server` (a bulk string of `field:value` lines)."""
        try:
            with socket.create_connection(split_url(base_url), timeout=timeout_s) as conn, \
                    conn.makefile("rb") as reply:
                conn.sendall(INFO_SERVER)
                header = reply.readline()
                if not header.startswith(b"$"):
                    return None
                info = reply.read(int(header[1:])).decode(errors="replace")
        except (OSError, ValueError):
            return None
        for line in info.splitlines():
            if line.startswith("redis_version:"):
                return line.partition(":")[2].strip() or None
        return None

    def request_extras(self, workload: dict) -> dict:
        return {}
