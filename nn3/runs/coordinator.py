"""JAX's coordination service for a run of several processes, in a process of its own.

    $ python -m nn3.runs.coordinator "[::]:7777" 2     # process 0 of the run starts it
    ready

Process 0 of a run starts this beside itself (nn3.runs.cluster), so that the run's
coordinator outlives any one training process: when process 0 itself dies, the others
still hear that it went silent and stop with a line that says so, where JAX would abort
them the moment its coordinator vanished. It prints ``ready`` (or ``error: ...`` and
exits 1) once it listens, then serves until process 0 writes ``done`` on its standard
input, or for ``LINGER_S`` more once that input closes without it (process 0 is gone:
the others need the coordinator to learn so).
"""
from __future__ import annotations

import socket
import sys
import time

__all__ = ["LINGER_S", "main", "port_free"]

LINGER_S = 90  # past the watchdog's verdict (nn3.runs.watchdog.SILENT_S) and JAX's own


def port_free(port: int) -> bool:
    """Whether no socket of this host listens on ``port`` (gRPC would share a port that one does)."""
    for family, address in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((address, port))
            return True
        except OSError as e:
            if e.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                return False
            continue  # this family is not available here: try the other
    return True


def main(argv: list[str]) -> int:
    """``BIND NUM_PROCESSES HEARTBEAT_S``: serve the run's coordination until done."""
    bind, n, heartbeat = argv[0], int(argv[1]), int(argv[2])
    port = int(bind.rpartition(":")[2])
    if not port_free(port):
        print(f"error: port {port} is in use", flush=True)
        return 1
    from jax._src.lib import _jax  # the service only: no device, no backend
    try:
        service = _jax.get_distributed_runtime_service(bind, n, heartbeat_timeout=heartbeat, shutdown_timeout=30,
                                                       recoverable=True)
    except Exception as e:  # gRPC's own reasons
        print(f"error: {(str(e).strip().splitlines() or [type(e).__name__])[0]}", flush=True)
        return 1
    print("ready", flush=True)
    said = sys.stdin.readline().strip()
    time.sleep(1 if said == "done" else LINGER_S)
    service.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
