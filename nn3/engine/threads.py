"""How many threads JAX's CPU backend works with, chosen before JAX starts.

    >>> from nn3.engine import threads
    >>> threads.parse("1"), threads.parse("all"), threads.parse(None)
    (1, None, None)

XLA sizes its CPU thread pool once, from the cores the process may run on when the
backend starts. A network as small as chapter 1's does so little work per mini-batch
that with two pool threads the step hands over between them and an epoch is slower and
less steady than with one; a conv net does enough per step to gain from every core
(bench/README.md has the numbers). So ``nn3 train`` and ``nn3 resume`` start JAX with
one thread for a small fully connected net and with all cores otherwise (``for_spec``);
``NN3_CPU_THREADS`` (a number, or ``all``) overrides that, and a script can call
``limit(n)`` before its first JAX computation.

A member run (nn3.engine.trainer) instead asks for one CPU device per core (``host_devices``,
JAX's ``jax_num_cpu_devices``, also before JAX starts): each device runs its share of
the members, so several nets keep the cores busy where one net's ops leave them idle.
A count the user gave (``--xla_force_host_platform_device_count`` in XLA_FLAGS, or
JAX_NUM_CPU_DEVICES) is left as it is.
"""
from __future__ import annotations

import importlib.util
import os

from nn3.engine.spec import forward_macs, has_conv

ENV = "NN3_CPU_THREADS"
_CUDA_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin")   # what nn3's cuda extra (jax[cuda12]) installs
_ACCELERATOR_PLUGINS = (*_CUDA_PLUGINS, "jax_rocm60_plugin", "jax_rocm7_plugin", "libtpu")


def parse(value: str | int | None) -> int | None:
    """``NN3_CPU_THREADS``'s value as a thread count; None for unset, empty or ``all``."""
    if value is None or str(value).strip().lower() in ("", "all", "0"):
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{ENV}: expected a number of threads or 'all', got {value!r}") from None
    if n < 0:
        raise ValueError(f"{ENV}: expected a number of threads or 'all', got {value!r}")
    return n


def _started() -> bool:
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # the private hook moved: assume started, so that nothing is changed
        return True


def _cpu_only() -> bool:
    """Whether JAX_PLATFORMS keeps JAX on the CPU (then a plugin's presence does not matter)."""
    return os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu"


def check_platforms() -> None:
    """A one-line ModuleNotFoundError when JAX_PLATFORMS asks for an NVIDIA GPU (``cuda``,
    or ``gpu`` with no ROCm plugin either) and JAX's CUDA plugin is not installed.

    JAX itself fails there, when it starts, with a bare AssertionError; the plugin comes
    with nn3's cuda extra, which installs on Linux (and in WSL2), not on native Windows or
    macOS.
    """
    asked = [p.strip() for p in os.environ.get("JAX_PLATFORMS", "").lower().split(",")]
    gpus = _CUDA_PLUGINS + (("jax_rocm60_plugin", "jax_rocm7_plugin") if "gpu" in asked else ())
    if ({"cuda", "gpu"} & set(asked)) and not any(importlib.util.find_spec(p) for p in gpus):
        raise ModuleNotFoundError(f"JAX_PLATFORMS={os.environ['JAX_PLATFORMS']} asks for an NVIDIA GPU, but JAX's "
                                  "CUDA plugin is not installed (nn3's cuda extra, on Linux or in WSL2; "
                                  "JAX_PLATFORMS=cpu trains on the CPU)", name=_CUDA_PLUGINS[0])


def limit(n: int | None, first: int = 0) -> bool:
    """Start JAX's backends now, with a CPU pool of ``n`` threads; True when that was done.

    The pool's cores are ``n`` of the usable ones in order, from the ``first``-th on
    (wrapping): processes of one run on one machine, each given its own ``first``, take
    cores of their own instead of all sharing the first ``n``.

    Does nothing (False) when ``n`` is None or covers every usable core, when JAX has
    already started, when an accelerator plugin is installed and JAX_PLATFORMS is not
    ``cpu`` (the pool then matters little, and its threads should not be pinned;
    nn3.engine.backend records ``pin_threads`` per backend), or when the OS cannot set
    affinities: macOS and Windows have no call for it, and a sandbox may refuse it. JAX
    then starts as usual, later, with a pool for every core: the same numbers, only
    slower for a small net. The calling thread's cores are restored afterwards; the pool
    keeps its ``n``.
    """
    if n is None or not hasattr(os, "sched_setaffinity") or _started():
        return False
    if not _cpu_only() and any(importlib.util.find_spec(p) for p in _ACCELERATOR_PLUGINS):
        return False
    cores = os.sched_getaffinity(0)
    if n >= len(cores):
        return False
    try:
        ordered = sorted(cores)
        at = first % len(ordered)
        os.sched_setaffinity(0, (ordered[at:] + ordered[:at])[:n])
    except OSError:
        return False
    import jax
    try:
        jax.devices()  # creates the CPU client and its pool while only n cores are visible
    finally:
        os.sched_setaffinity(0, cores)
    return True


DEVICES_FLAG = "--xla_force_host_platform_device_count"  # XLA_FLAGS' way to say how many CPU devices


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def user_chose_devices() -> bool:
    """Whether the user set the number of CPU devices (XLA_FLAGS' DEVICES_FLAG, JAX_NUM_CPU_DEVICES)."""
    return DEVICES_FLAG in os.environ.get("XLA_FLAGS", "") or bool(os.environ.get("JAX_NUM_CPU_DEVICES", "").strip())


def host_devices(n: int) -> bool:
    """Have JAX's CPU backend start with ``n`` devices (a member run shards its members
    over them, nn3.engine.trainer); True when that was set.

    Does nothing when ``n`` < 2, when the user chose a number (``user_chose_devices``),
    when JAX has already started, or when an accelerator plugin is installed and
    JAX_PLATFORMS is not ``cpu`` (the members then go to the accelerator). The devices
    share one pool of threads: ``limit`` is not for such a run.
    """
    if n < 2 or user_chose_devices() or _started():
        return False
    if not _cpu_only() and any(importlib.util.find_spec(p) for p in _ACCELERATOR_PLUGINS):
        return False
    import jax
    jax.config.update("jax_num_cpu_devices", n)
    return True


SMALL_STEP_MACS = 2_000_000  # per mini-batch; [784,100,10] at 10 is 0.8M, [784,1000,10] 7.9M


def for_spec(spec: dict | None, mini_batch_size: int = 10) -> int | None:
    """The pool size ``nn3 train`` starts JAX with for ``spec``.

    ``NN3_CPU_THREADS`` when set; else one thread for a fully connected net whose
    mini-batch step multiplies fewer than SMALL_STEP_MACS weights by inputs (where one
    thread was measured faster than two: bench/README.md); else None (every core).
    """
    if os.environ.get(ENV) is not None:
        return parse(os.environ[ENV])
    if not spec or not spec.get("layers") or has_conv(spec):
        return None
    return 1 if mini_batch_size * forward_macs(spec) < SMALL_STEP_MACS else None
