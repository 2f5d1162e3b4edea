"""One run over several processes (jax.distributed, on localhost): the numbers of one process, bit for bit.

    python -m pytest tests/test_processes.py -q

Each process is an ``nn3`` child with one CPU device (gloo collectives between them), on a
port of its own. A member run and a sweep on 2 and 3 processes equal the run on one,
parameters and metrics.jsonl; a conv member run on 2 does too; a run stopped on 2
processes, resumed on 1, stopped again and resumed on 3 equals the run that never stopped;
``kill -9`` of one process ends the other with one line; every bad start is one line and
writes nothing. Stops land at a pause the test injects (tests/paused_nn3.py): no sleeps,
and no assertion on how long anything takes.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import children
from nets import CONV, MLP
from nn3.engine import layers
from nn3.runs import config as run_config
from nn3.runs import inspect

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="JAX on Windows has no collectives between "
                                "processes (nn3 refuses in one line: tests/test_cli.py)")

SGD = dict(epochs=2, eta=0.5, lmbda=0.1, momentum=0.5, mini_batch_size=10, chunks=3)
LIMIT = 300                 # 30 mini-batches an epoch: calls of 10
MID = 30 + 10               # in the second epoch, after its first call
LATER = 30 + 20             # after its second call


@pytest.fixture(scope="module")
def data(synthetic_mnist):
    return synthetic_mnist.path


def recorded(tmp_path, data, spec=MLP, members=(3, 0, 7, 1), **sgd) -> Path:
    """A config.json for ``nn3 train --config`` of a member run."""
    path = tmp_path / "config.json"
    config = run_config.make_config("shallow", spec=spec, data_path=data, limit=LIMIT, members=list(members),
                                    **{**SGD, **sgd})
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    """A child's environment: one CPU device, this checkout's nn3, a short wait for the others."""
    out = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "NN3_COORDINATOR", "NN3_NUM_PROCESSES",
                                                            "NN3_PROCESS_ID")}
    out.update(PYTHONPATH=str(children.ROOT), JAX_NUM_CPU_DEVICES="1", JAX_PLATFORMS="cpu", NN3_CLUSTER_TIMEOUT="60")
    return out


def flags(n: int, i: int, port: int) -> list[str]:
    return ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n), "--process-id", str(i)]


def launch(argv, n: int, port: int, *, paused: tuple | None = None) -> list[subprocess.Popen]:
    """``nn3 ARGV`` as process i of n, for each i; ``paused`` = (process, step, flag) pauses that one."""
    procs = []
    for i in range(n):
        cmd = [sys.executable, "-m", "nn3"]
        if paused is not None and paused[0] == i:
            cmd = [sys.executable, str(children.ROOT / "tests" / "paused_nn3.py"), str(paused[1]), str(paused[2])]
        procs.append(subprocess.Popen([*cmd, *map(str, argv), *flags(n, i, port)], env=env(), text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return procs


def finish(procs) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        try:
            o, e = p.communicate(timeout=900)
        finally:
            if p.poll() is None:
                p.kill()
        out.append((p.returncode, o, e))
    return out


def nn3(argv, n: int = 1) -> list[tuple[int, str, str]]:
    """``nn3 ARGV`` on ``n`` processes (one: no flags), to its end; every exit status must be 0."""
    if n == 1:
        got = [subprocess.run([sys.executable, "-m", "nn3", *map(str, argv)], env=env(), text=True,
                              capture_output=True, timeout=900)]
        got = [(g.returncode, g.stdout, g.stderr) for g in got]
    else:
        got = finish(launch(argv, n, free_port()))
    for code, _, err in got:
        assert code == 0, err[-3000:]
    return got


def same_run(a: Path, b: Path) -> None:
    assert (a / "metrics.jsonl").read_text(encoding="utf-8") == (b / "metrics.jsonl").read_text(encoding="utf-8")
    for x, y in zip(inspect.load(a), inspect.load(b)):
        for p, q in zip(layers.get_params(x), layers.get_params(y)):
            np.testing.assert_array_equal(p["w"], q["w"])
            np.testing.assert_array_equal(p["b"], q["b"])


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory) -> tuple[Path, Path]:
    """The 4-member run on one process: (its config.json, its run directory)."""
    tmp = tmp_path_factory.mktemp("one")
    cfg = recorded(tmp, data)
    nn3(["train", "--config", cfg, "--run", tmp / "run", "--quiet"])
    return cfg, tmp / "run"


@pytest.mark.parametrize("n", [2, 3])
def test_a_member_run_on_n_processes_equals_one_process(one_process, tmp_path, n):
    cfg, alone = one_process
    outs = nn3(["train", "--config", cfg, "--run", tmp_path / "run", "--quiet"], n)
    same_run(tmp_path / "run", alone)
    assert not any((tmp_path / f"run{i}").exists() for i in range(n))  # one directory, process 0's
    assert all("run directory:" in o for _, o, _ in outs)


@pytest.mark.parametrize("n", [2, 3])
def test_a_sweep_on_n_processes_equals_one_process(data, tmp_path, n):
    sweep = ["--sweep", "lmbda=0,0.5", "--seeds", "0,1", "--epochs", "1", "--limit", str(LIMIT), "--data", data,
             "--chunks", "3", "--quiet"]
    nn3(["train", "shallow", *sweep, "--run", tmp_path / "one"])
    nn3(["train", "shallow", *sweep, "--run", tmp_path / "many"], n)
    same_run(tmp_path / "many", tmp_path / "one")


def test_a_conv_member_run_on_two_processes_equals_one_process(data, tmp_path):
    cfg = recorded(tmp_path, data, spec=CONV, members=(1, 0, 2), epochs=1)
    nn3(["train", "--config", cfg, "--run", tmp_path / "one", "--quiet"])
    nn3(["train", "--config", cfg, "--run", tmp_path / "two", "--quiet"], 2)
    same_run(tmp_path / "two", tmp_path / "one")


def test_stopped_on_two_resumed_on_one_stopped_resumed_on_three_equals_never_stopping(one_process, tmp_path):
    cfg, alone = one_process
    d, flag = tmp_path / "run", tmp_path / "paused"
    procs = launch(["train", "--config", cfg, "--run", d, "--quiet"], 2, free_port(), paused=(1, MID, flag))
    try:
        assert children.wait_for_pause(procs[1], flag) == str(MID)
        procs[1].send_signal(signal.SIGINT)  # Ctrl-C on one process stops both at that call's end
    finally:
        got = finish(procs)
    assert [code for code, _, _ in got] == [130, 130], [e[-2000:] for _, _, e in got]
    assert max(int(p.name) for p in d.iterdir() if p.name.isdigit()) == MID
    code, _, err, at = children.signalled(["resume", d, "--quiet"], LATER, children.STOP, tmp_path / "paused2")
    assert (code, at) == (children.EXIT[children.STOP], str(LATER)), err
    nn3(["resume", d, "--quiet"], 3)
    same_run(d, alone)


@pytest.mark.parametrize("killed", [1, 0], ids=["worker", "primary"])
def test_kill_9_of_one_process_ends_the_other_in_one_line_and_the_run_resumes(one_process, tmp_path, killed):
    """Process 0 writes the run; its death ends the other as a worker's does (JAX's
    coordinator lives in a process of its own, nn3.runs.coordinator)."""
    cfg, alone = one_process
    d, flag, other = tmp_path / "run", tmp_path / "paused", 1 - killed
    procs = launch(["train", "--config", cfg, "--run", d, "--quiet"], 2, free_port(), paused=(killed, MID, flag))
    try:
        children.wait_for_pause(procs[killed], flag)  # the first epoch's checkpoint is on disk
        procs[killed].kill()
    finally:
        got = finish(procs)
    code, _, err = got[other]
    ours = [line for line in err.splitlines() if line.startswith("nn3: ")]
    assert code == 4 and len(ours) == 1, err[-2000:]
    assert ours[0].startswith(f"nn3: process {killed} ") and \
        ours[0].endswith(f"process {other} stops; carry on later with nn3 resume")
    assert max(int(p.name) for p in d.iterdir() if p.name.isdigit()) == 30
    nn3(["resume", d, "--quiet"])  # from the last checkpoint process 0 wrote, on one process
    same_run(d, alone)


def _one_line(code, err, *, want) -> None:
    lines = [line for line in err.strip().splitlines() if not line.startswith("[Gloo]")]
    assert code != 0 and len(lines) == 1 and want in lines[0], err[-2000:]


def test_bad_starts_are_one_line_and_write_nothing(one_process, tmp_path):
    cfg, _ = one_process
    d = tmp_path / "run"
    train = [sys.executable, "-m", "nn3", "train", "--config", str(cfg), "--run", str(d), "--quiet"]
    port = free_port()

    def alone(*more, extra_env=None):
        out = subprocess.run([*train, *map(str, more)], env={**env(), **(extra_env or {})}, text=True,
                             capture_output=True, timeout=600)
        return out.returncode, out.stderr

    _one_line(*alone(*flags(2, 2, port)), want="--process-id: 2 is out of range for 2 processes (0 to 1)")
    _one_line(*alone("--coordinator", f"127.0.0.1:{port}"), want="needs --num-processes, --process-id too")
    code, err = alone(*flags(2, 1, port), extra_env={"NN3_CLUSTER_TIMEOUT": "3"})  # no coordinator there
    _one_line(code, err, want=f"cannot join the run at 127.0.0.1:{port} within 3 s")
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", port))
        busy.listen()
        _one_line(*alone(*flags(2, 0, port)), want=f"port {port} is in use")
    lone = subprocess.run([sys.executable, "-m", "nn3", "train", "ch1", "--run", str(d), *flags(2, 0, port)],
                          env=env(), text=True, capture_output=True, timeout=600)
    _one_line(lone.returncode, lone.stderr, want="a run of one network cannot use more than one process")
    assert not d.exists()


def test_processes_that_disagree_are_refused_in_one_line(one_process, tmp_path):
    cfg, _ = one_process
    d, port = tmp_path / "run", free_port()
    base = [sys.executable, "-m", "nn3", "train", "--config", str(cfg), "--run", str(d), "--quiet"]
    procs = [subprocess.Popen([*base, *flags(2, 0, port)], env=env(), text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE),
             subprocess.Popen([*base, *flags(3, 1, port)], env=env(), text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)]
    for code, _, err in finish(procs):
        _one_line(code, err, want="the processes disagree on their number")
    port = free_port()
    procs = [subprocess.Popen([*base, *more, *flags(2, i, port)], env=env(), text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for i, more in enumerate([[], ["--eta", "0.1"]])]
    for code, _, err in finish(procs):
        _one_line(code, err, want="process 1's settings differ from process 0's")
    assert not d.exists()
