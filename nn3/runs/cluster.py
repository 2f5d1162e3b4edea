"""One run over several processes and hosts: starting multi-controller JAX, agreeing, failing cleanly.

    >>> from nn3.runs import cluster
    >>> cluster.Setup.from_flags(None, None, None, environ={}) is None      # one process
    True
    >>> cluster.Setup.from_flags("10.0.0.1", 2, 1, environ={})
    Traceback (most recent call last):
    ...
    nn3.runs.cluster.ClusterError: --coordinator: give HOST:PORT (a port 1-65535), got '10.0.0.1'

A member run, a sweep or the book's vote may run as P processes, one per host (or per group
of cores), each with ``--coordinator HOST:PORT --num-processes P --process-id I`` (or
NN3_COORDINATOR, NN3_NUM_PROCESSES, NN3_PROCESS_ID), or started by a scheduler that JAX
recognises (SLURM's ``srun``, Open MPI's ``mpirun``). ``start`` joins them with
``jax.distributed``: process 0 runs JAX's coordinator, every process runs the same program
over one global mesh of every process's devices, and their collectives (gloo on the CPU)
carry what must be shared (nn3.engine.processes). Only process 0 reads and writes the run
directory; every process needs the data.

Faults end in one line and a non-zero exit, never a hang: a coordinator that cannot be
reached (``CONNECT_S``), processes that disagree on their number or their settings, and,
during the run, a process that dies or stops answering (nn3.runs.watchdog: every process
beats through JAX's coordinator and watches the others' beats).
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from nn3.runs import watchdog

__all__ = ["CONNECT_S", "ENV", "ClusterError", "Setup", "agree", "any_stop", "check_same", "finish", "first_error",
           "jax_index", "join", "start", "started"]

ENV = {"coordinator": "NN3_COORDINATOR", "num_processes": "NN3_NUM_PROCESSES", "process_id": "NN3_PROCESS_ID"}
CONNECT_S = 60        # how long a process waits for the others and the coordinator (NN3_CLUSTER_TIMEOUT)
JAX_HEARTBEAT_S = 45  # JAX's own verdict on a silent process (it aborts): after ours, inside 60 s
_SCHEDULERS = (("SLURM_NTASKS", "SLURM_JOB_ID"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"))


class ClusterError(ValueError):
    """A multi-process run that cannot start or go on; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Setup:
    """How this process joins a run of several: the coordinator's ``host:port`` (None: a
    scheduler's, found by JAX), the number of processes, this one's index."""
    coordinator: str | None
    num_processes: int | None
    process_id: int | None

    @classmethod
    def from_flags(cls, coordinator: str | None, num_processes: int | None, process_id: int | None,
                   environ: Mapping[str, str] | None = None) -> Setup | None:
        """The setup the flags ask for, else NN3_COORDINATOR & co., else a scheduler's
        (SLURM, Open MPI with more than one task); None for a run in one process.

        Raises a one-line ClusterError for an incomplete or impossible setup.
        """
        env = os.environ if environ is None else environ
        given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
        for key, name in ENV.items():
            if given[key] is None and env.get(name, "").strip():
                given[key] = env[name].strip()
        if all(v is None for v in given.values()):
            for size, marker in _SCHEDULERS:
                if marker in env and _count(env.get(size, "1"), size) > 1:
                    _check_platform()
                    return cls(None, None, None)  # jax.distributed finds the rest
            return None
        missing = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is None]
        if missing:
            raise ClusterError(f"a run of several processes needs {', '.join(missing)} too "
                               f"(or {', '.join(ENV[k] for k, v in given.items() if v is None)})")
        host, _, port = str(given["coordinator"]).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ClusterError(f"--coordinator: give HOST:PORT (a port 1-65535), got {given['coordinator']!r}")
        n = _count(given["num_processes"], "--num-processes")
        i = _count(given["process_id"], "--process-id", lowest=0)
        if i >= n:
            raise ClusterError(f"--process-id: {i} is out of range for {n} processes (0 to {n - 1})")
        if n == 1:
            return None
        _check_platform()
        return cls(str(given["coordinator"]), n, i)


def _check_platform() -> None:
    """A one-line ClusterError where JAX has no collectives between processes: Windows
    (jaxlib builds its CPU ones, gloo, for Linux and macOS only; WSL2 is Linux)."""
    if sys.platform == "win32":
        raise ClusterError("a run of several processes needs Linux or macOS (WSL2 on Windows): JAX on Windows "
                           "has no collectives between processes")


def _count(value: Any, name: str, lowest: int = 1) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ClusterError(f"{name}: not an integer: {value!r}") from None
    if n < lowest:
        raise ClusterError(f"{name}: must be at least {lowest}, got {n}")
    return n


_state: dict[str, Any] = {}  # the started cluster of this process: its setup, its watchdog


def started() -> bool:
    """Whether this process has joined a run of several."""
    return "setup" in _state


def join(setup: Setup) -> None:
    """Connect to the other processes of ``setup`` (before anything runs on JAX: a thread
    pool may still be sized after this); one-line ClusterErrors when it cannot. ``start``
    then checks the run and starts the watchdog.

    With a coordinator address, process 0 starts JAX's coordinator in a process of its own
    (nn3.runs.coordinator), so that its own death is reported by the others, not fatal to
    them; a scheduler's run (no address) has it inside process 0, as JAX does.
    """
    if started():
        return
    if setup.coordinator is None:
        _initialize(setup)
    else:
        if setup.process_id == 0:
            _state["service"] = _serve(setup)
        _connect(setup)
    _state["setup"] = setup
    watchdog.attach(_state["client"], jax_index(), _jax_state().num_processes)


def _initialize(setup: Setup) -> None:
    """JAX's own start, for a scheduler's run (SLURM, Open MPI): it finds the rest."""
    import jax
    try:
        jax.distributed.initialize(initialization_timeout=_connect_s(), heartbeat_timeout_seconds=JAX_HEARTBEAT_S,
                                   shutdown_timeout_seconds=CONNECT_S)
    except Exception as e:  # gRPC and JAX raise their own kinds: one line
        raise ClusterError(f"cannot join the scheduler's run within {_connect_s()} s: {watchdog.one_line(e)}") from None
    _state["client"] = _jax_state().client


def _serve(setup: Setup) -> subprocess.Popen:
    """Start JAX's coordinator for the run, in a process of its own; once it listens."""
    port = str(setup.coordinator).rpartition(":")[2]
    child = subprocess.Popen([sys.executable, "-m", "nn3.runs.coordinator", f"[::]:{port}", str(setup.num_processes),
                              str(JAX_HEARTBEAT_S)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)  # its say is "ready" or "error: ..."
    said = child.stdout.readline().strip() if child.stdout else ""
    if said != "ready":
        child.wait()
        raise ClusterError(f"cannot start the coordinator at {setup.coordinator}: "
                           f"{said.removeprefix('error: ') or 'it stopped'}")
    atexit.register(_done, child)  # after JAX's own clean-up was registered: runs before it
    return child


def _done(child: subprocess.Popen) -> None:
    """At a clean exit of process 0: leave the run (every process has, then), stop the coordinator."""
    import jax
    jax.distributed.shutdown()
    if child.stdin:
        child.stdin.write("done\n")
        child.stdin.close()
    child.wait()


def _connect(setup: Setup) -> None:
    """Connect this process to the run's coordinator, as ``jax.distributed.initialize`` does
    for every process but the one that serves (here no process serves: nn3.runs.coordinator does)."""
    from jax._src.lib import _jax  # with _jax_state, where nn3 reaches into JAX's internals
    state = _jax_state()
    if state.client is not None:
        raise ClusterError("JAX's distributed runtime was started already")
    _wait_for_port(str(setup.coordinator), setup.num_processes or 0)
    client = _jax.get_distributed_runtime_client(setup.coordinator, setup.process_id, init_timeout=_connect_s(),
                                                 heartbeat_timeout=JAX_HEARTBEAT_S, shutdown_timeout=CONNECT_S,
                                                 use_compression=True)
    try:
        client.connect()
    except Exception as e:  # gRPC's reasons: unreachable, refused, another run's coordinator
        raise ClusterError(f"cannot join the run at {setup.coordinator} within {_connect_s()} s: "
                           f"{watchdog.one_line(e)} (are all {setup.num_processes} processes started, each with "
                           "its own --process-id?)") from None
    assert setup.process_id is not None and setup.num_processes is not None  # a coordinator's address gives both
    state.coordinator_address, state.process_id, state.num_processes = setup.coordinator, setup.process_id, \
        setup.num_processes
    state.client = client
    state.initialize_preemption_sync_manager()
    _state.update(client=client, setup=setup)  # from here on, a fault ends the process (nn3.runs.watchdog.fail)
    _same_count(client, setup)


def _wait_for_port(coordinator: str, n: int) -> None:
    """Wait until something listens at ``coordinator`` (HOST:PORT), for up to the connect
    timeout; a one-line ClusterError if nothing does. JAX's client, told to connect where
    nothing answers, aborts the whole process when its own deadline passes."""
    host, _, port = coordinator.rpartition(":")
    deadline = time.monotonic() + _connect_s()
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ClusterError(f"cannot join the run at {coordinator} within {_connect_s()} s: nothing answers "
                                   f"there ({e.strerror or e}; are all {n} processes started, process 0 "
                                   "first or soon after?)") from None
            time.sleep(0.2)


def _same_count(client: Any, setup: Setup) -> None:
    """A one-line ClusterError unless every process counts as many processes as process 0
    (checked through the coordinator, before JAX's devices wait for processes that never come)."""
    me, n = setup.process_id or 0, setup.num_processes or 1
    client.key_value_set(f"nn3/count/{me}", str(n))
    theirs = [0] if me else range(1, n)
    for q in theirs:
        try:
            count = int(client.blocking_key_value_get(f"nn3/count/{q}", _connect_s() * 1000))
        except Exception:  # never published: that process is missing
            raise ClusterError(f"process {q} did not join within {_connect_s()} s") from None
        if count != n:
            raise ClusterError(f"the processes disagree on their number: process {q} counts {count}, "
                               f"process {me} counts {n}")


def start() -> None:
    """After ``join`` (and after JAX's thread pool was sized): start this process's watchdog
    (see the module's docstring). Nothing in one process."""
    if not started() or "watchdog" in _state:
        return
    _state["watchdog"] = watchdog.Watchdog()
    _state["watchdog"].start()


def finish() -> None:
    """The end of a run that went well: wait for every process, then stop watching them
    (one that ends first must not be taken for one that died)."""
    if "watchdog" in _state:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("nn3-finish")
        _state.pop("watchdog").done = True


def _jax_state() -> Any:
    """JAX's record of this process in the run: its client of the coordination service
    (whose key-value store carries the heartbeats), its process id and the count."""
    from jax._src import distributed  # with _connect, where nn3 reaches into JAX's internals
    return distributed.global_state


def _connect_s() -> int:
    """How long a process waits for the others: $NN3_CLUSTER_TIMEOUT seconds, else CONNECT_S."""
    value = os.environ.get("NN3_CLUSTER_TIMEOUT", "").strip()
    try:
        return max(1, int(value)) if value else CONNECT_S
    except ValueError:
        raise ClusterError(f"NN3_CLUSTER_TIMEOUT: expected a number of seconds, got {value!r}") from None


def _gather_text(text: str) -> list[str]:
    """Every process's ``text``, in process order (a collective)."""
    from nn3.engine import processes
    raw = np.frombuffer(text.encode("utf-8"), np.uint8)
    lengths = processes.gather(np.array([len(raw)]))[:, 0]
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[:len(raw)] = raw
    return [bytes(row[:n]).decode("utf-8") for row, n in zip(processes.gather(padded), lengths)]


def check_same(what: str, value: Any) -> None:
    """A one-line ClusterError unless every process has the same ``value`` (JSON-able) for ``what``."""
    if not started():
        return
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    digests = _gather_text(digest)
    differ = [i for i, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise ClusterError(f"process {differ[0]}'s {what} differ from process 0's; give every process the same "
                           f"command line")


def first_error(mine: str | None) -> None:
    """Raise, on every process, the first of the processes' one-line errors (None: none here)."""
    if not started():
        if mine:
            raise ClusterError(mine)
        return
    said = _gather_text(mine or "")
    for i, line in enumerate(said):
        if line:
            raise ClusterError(line if i == jax_index() else f"process {i}: {line}")


def agree(value: Any) -> Any:
    """The primary's ``value`` (JSON-able) on every process."""
    if not started():
        return value
    return json.loads(_gather_text(json.dumps(value))[0])


def any_stop(requested: int | None) -> int | None:
    """The first stop request (a signal number) of any process, in process order, or None."""
    if not started():
        return requested
    from nn3.engine import processes
    signums = processes.gather(np.array([requested or 0]))[:, 0]
    asked = [int(s) for s in signums if s]
    return asked[0] if asked else None


def jax_index() -> int:
    """This process's index in the run (0 in one process)."""
    if "client" not in _state:
        return 0
    return int(_jax_state().process_id)
