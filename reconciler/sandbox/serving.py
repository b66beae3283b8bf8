"""An HTTP server answering from a daemon thread, stopped cleanly: the one way the
sandbox, the demo registry and the test fixtures run their servers."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class ServerThread:
    """Serves ``server`` in a daemon thread until ``stop()``, which shuts it down,
    closes its socket and waits for the thread."""

    def __init__(self, server: ThreadingHTTPServer, *, name: str, poll_interval: float = 0.1):
        server.daemon_threads = True
        self.server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": poll_interval},
            name=name, daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
