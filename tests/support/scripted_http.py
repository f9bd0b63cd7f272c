"""A scripted HTTP server on a real socket: hand-written responses, sent in small pieces."""
from __future__ import annotations

import json
import socket
import threading


class ScriptedServer:
    """Answers each request on 127.0.0.1 with the next scripted response, in `piece`-byte
    writes; `close_after` responses are followed by closing the connection; a None response
    closes the connection after reading the request, without answering it."""

    def __init__(self, responses: list[bytes], piece: int = 7, close_after: bool = False):
        self.responses = list(responses)
        self.piece, self.close_after = piece, close_after
        self.connections = 0
        self.bodies: list = []         # request bodies received: JSON, else the bytes
        self.heads: list[bytes] = []   # request lines and headers received
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pause = threading.Event()
        with conn:
            buffer = b""
            while self.responses:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                self.heads.append(head)
                fields = head.lower().split(b"content-length:")
                length = int(fields[1].split(b"\r\n")[0]) if len(fields) > 1 else 0
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                try:
                    self.bodies.append(json.loads(buffer[:length]))
                except ValueError:
                    self.bodies.append(buffer[:length])
                buffer = buffer[length:]
                response = self.responses.pop(0)
                if response is None:           # close without answering this request
                    return
                for start in range(0, len(response), self.piece):
                    try:
                        conn.sendall(response[start:start + self.piece])
                    except (BrokenPipeError, ConnectionResetError):
                        return             # the client gave up on this answer (e.g. PROTOCOL)
                    pause.wait(0.0005)     # let the client read pieces separately
                if self.close_after:
                    return

    def close(self) -> None:
        self.listener.close()
