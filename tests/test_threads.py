"""Tests for nn3.engine.threads: the CPU pool size chosen before JAX starts.

    .venv/bin/python -m pytest tests/test_threads.py -q
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nn3 import cli
from nn3.runs import presets
from nn3.engine import threads
from nn3.engine.spec import mlp_spec


@pytest.mark.parametrize("value, want", [("1", 1), ("2", 2), ("all", None), ("ALL", None), ("", None),
                                         ("0", None), (None, None)])
def test_parse(value, want):
    assert threads.parse(value) == want


@pytest.mark.parametrize("value", ["one", "-1", "1.5"])
def test_parse_refuses_what_is_not_a_count(value):
    with pytest.raises(ValueError, match=f"NN3_CPU_THREADS: .*{value!r}"):
        threads.parse(value)


def test_small_fully_connected_nets_get_one_thread_others_all(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.for_spec(mlp_spec([784, 30, 10])) == 1
    assert threads.for_spec(mlp_spec([784, 100, 10])) == 1
    assert threads.for_spec(presets.get("shallow").spec) == 1
    assert threads.for_spec(mlp_spec([784, 1000, 10])) is None  # enough work for every core
    assert threads.for_spec(mlp_spec([784, 100, 10]), mini_batch_size=100) is None
    assert threads.for_spec(presets.get("basic_conv").spec) is None
    assert threads.for_spec(None) is None
    monkeypatch.setenv(threads.ENV, "all")
    assert threads.for_spec(mlp_spec([784, 30, 10])) is None
    monkeypatch.setenv(threads.ENV, "2")
    assert threads.for_spec(presets.get("basic_conv").spec) == 2


def test_limit_does_nothing_once_jax_has_started():
    import jax
    jax.devices()
    assert threads.limit(1) is False


SCRIPT = """
import os, sys
from nn3.engine import threads
before = os.sched_getaffinity(0)
done = threads.limit(1, first=int(sys.argv[1]))
import jax.numpy as jnp
float(jnp.ones(3).sum())
pool = [int(t) for t in os.listdir("/proc/self/task") if open(f"/proc/self/task/{t}/comm").read().startswith("tf_XLA")]
cores = sorted({c for t in pool for c in os.sched_getaffinity(t)})
print(done, len(pool), os.sched_getaffinity(0) == before, ",".join(map(str, cores)) or "-")
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2
                    or not os.path.isdir("/proc/self/task"), reason="needs Linux and two usable cores")
@pytest.mark.parametrize("first", [0, 1])
def test_limit_starts_jax_with_a_pool_of_one_and_gives_the_cores_back(first):
    """The pool of one thread runs on the ``first``-th usable core (process k of a run on
    one machine passes its own), and the calling thread gets every core back."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(first)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    done, pool, restored, cores = out.stdout.split()
    assert done == "True" and restored == "True"
    assert int(pool) <= 1  # 0 if a later jaxlib names its threads otherwise
    if int(pool):
        assert cores == str(sorted(os.sched_getaffinity(0))[first])


def test_cli_names_a_bad_thread_count_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(threads.ENV, "many")
    code = cli.main(["train", "ch1", "--limit", "100", "--run", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1 and "NN3_CPU_THREADS" in err and "'many'" in err
    assert not (tmp_path / "r").exists()
