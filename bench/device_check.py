"""One command for the first session that is lent an accelerator: tests, speed, a CPU run replayed, memory.

    python bench/device_check.py                        # on the accelerator, ~5-8 minutes on one H200
    python bench/device_check.py --json $OUT/check.json
    python bench/device_check.py --cpu --quick          # the same steps on CPU subsets, under 2 minutes

Steps, each timed and kept apart (one that fails is reported, the others still run):

1. ``cpu_run``: a short dbl_conv_relu run made first in a subprocess with
   ``JAX_PLATFORMS=cpu`` (the accelerator hidden), started before anything else;
2. ``tests``: the test suite without the real-MNIST tests (``pytest -m "not mnist"``; ``--quick``: the
   conv and backend tests) in a subprocess on this process's backend;
3. ``speed``: s/epoch (scaled to 50,000 images) of ch1 and of dbl_conv_relu under each
   conv formulation, training only, then evaluating test images (per 10,000); 5 dbl_conv_relu
   members vmapped (nn3.engine.trainer) against one net;
4. ``replay``: the CPU run replayed here: accuracy, the recorded one, and what differs;
5. peak device memory (``memory_stats``, where the backend has it) and the versions.

The table goes to stdout and everything to ``--json``. Timings take the fastest of
``--rounds`` epochs after one that compiles; ratios in one run mean more than seconds.
Goals on one H200 (issue 12): dbl_conv_relu <= 0.4 s/epoch, ch1 <= 0.08, 5 members <= 2x one.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FULL_EPOCH = 50_000
QUICK_TESTS = ["tests/test_conv.py", "tests/test_backends.py"]

MAKE_CPU_RUN = """
import json, sys
from nn3.runs import config as run_config, inspect, session
cfg = run_config.make_config("dbl_conv_relu", epochs=1, limit=int(sys.argv[2]), data_path=sys.argv[3] or None)
run, _, state = session.start(cfg, sys.argv[1])
run.close()
print(json.dumps({"test_accuracy": state.history[-1]["test_accuracy"], "backend": run.config["backend"]}))
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu", action="store_true", help="run on the CPU (sets JAX_PLATFORMS=cpu)")
    p.add_argument("--quick", action="store_true", help="small subsets, 1 timed epoch: CI's mode")
    p.add_argument("--tests", choices=["auto", "fast", "quick", "none"], default="auto",
                   help="which tests to run (auto: quick with --quick, else fast)")
    p.add_argument("--rounds", type=int, default=None, help="timed epochs per row (default 2, --quick 1)")
    p.add_argument("--json", default=None, help="where to write the results (default bench/out/device_check.json)")
    p.add_argument("--data", default=None, help="mnist.pkl.gz or its folder (default: $NN3_DATA_DIR)")
    a = p.parse_args(argv)
    a.tests = ("quick" if a.quick else "fast") if a.tests == "auto" else a.tests
    a.rounds = a.rounds or (1 if a.quick else 2)
    # images per timed epoch (ch1, dbl_conv_relu, xla on CPU, ensemble), evaluated, and the CPU run's limit
    a.sizes = dict(ch1=5000, dbl=500, dbl_xla=100, ens=200, eval=1000, cpu_run=300) if a.quick else \
        dict(ch1=FULL_EPOCH, dbl=FULL_EPOCH, dbl_xla=FULL_EPOCH, ens=10_000, eval=10_000, cpu_run=2000)
    a.json = a.json or str(ROOT / "bench" / "out" / "device_check.json")
    return a


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def start_cpu_run(folder: Path, limit: int, data_path) -> subprocess.Popen:
    """The run the accelerator replays, made on the CPU with the accelerator hidden."""
    return subprocess.Popen([sys.executable, "-c", MAKE_CPU_RUN, str(folder / "cpu_run"), str(limit),
                             str(data_path or "")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(JAX_PLATFORMS="cpu"), cwd=ROOT)


def run_tests(which: str, timeout: float) -> dict:
    """pytest in a subprocess on this backend; its summary counts."""
    args = QUICK_TESTS + ["-m", "not mnist"] if which == "quick" else ["-m", "not mnist"]
    began = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                             capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=timeout)
        text, code = out.stdout + out.stderr, out.returncode
    except subprocess.TimeoutExpired as e:
        text, code = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
    counts = {{"error": "errors"}.get(k, k): int(n)  # "1 error" and "2 errors" alike
              for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected)", text)}
    failed = [ln for ln in text.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    return {"which": which, "returncode": code, "seconds": time.perf_counter() - began, **counts,
            "failures": failed[:20], "tail": text.strip().splitlines()[-3:]}


def time_epochs(tr, rounds: int, n_images: int) -> dict:
    """Seconds per 50,000 images: one epoch that compiles, then the fastest of ``rounds``."""
    began = time.perf_counter()
    tr.run_epoch(0, 0, tr.cfg.eta)  # returns numpy losses: synchronous
    first = time.perf_counter() - began
    walls = []
    for r in range(rounds):
        began = time.perf_counter()
        tr.run_epoch(r + 1, 0, tr.cfg.eta)
        walls.append((time.perf_counter() - began) * FULL_EPOCH / n_images)
    return {"s_per_epoch": min(walls), "rounds": walls, "compile_plus_one_s": first, "images": n_images}


def speed(args, splits) -> dict:
    from nn3.engine import backend, conv, evaluation, layers
    from nn3.engine.device_data import DeviceData
    from nn3.engine.settings import SGDConfig
    from nn3.engine.trainer import Trainer
    from nn3.runs import presets
    (x, y), _, (tx, ty) = splits
    test = (tx[:args.sizes["eval"]], ty[:args.sizes["eval"]])
    out = {}

    def trainer(preset, n, form=None, **over):
        n = min(n, len(x))  # a small data set (tests) gives what it has
        p = presets.get(preset)
        cfg = SGDConfig(**{**p.sgd, "epochs": 1, **over})
        net = layers.build(p.spec, seed=0, init=p.init, formulation=form)
        return net, Trainer([net], [cfg], DeviceData.from_arrays(x[:n], y[:n]))

    net, tr = trainer("ch1", args.sizes["ch1"])
    out["ch1"] = time_epochs(tr, args.rounds, tr.n_examples)
    on_cpu = backend.choices().backend == "cpu"
    for form in conv.FORMULATIONS:
        n = args.sizes["dbl_xla"] if form == "xla" and on_cpu else args.sizes["dbl"]  # XLA:CPU's conv: ~80x
        net, tr = trainer("dbl_conv_relu", n, form)
        row = time_epochs(tr, args.rounds, tr.n_examples)
        tr.sync()
        evaluation.evaluate(net, (test[0][:1], test[1][:1]))  # compiles: every batch is padded to one size
        began = time.perf_counter()
        right, _, count = evaluation.evaluate(net, test)
        row["eval_10000_s"] = (time.perf_counter() - began) * 10_000 / count
        row["test_accuracy"] = right / count
        out[f"dbl_conv_relu[{form}]"] = row
    # Five members vmapped in one program against one net, on the same images, backend's formulation.
    n = min(args.sizes["ens"], len(x))
    p = presets.get("dbl_conv_relu")
    cfgs = [SGDConfig(**{**p.sgd, "epochs": 1, "seed": s}) for s in range(5)]
    examples = DeviceData.from_arrays(x[:n], y[:n])
    ens = time_epochs(Trainer([layers.build(p.spec, seed=c.seed, init=p.init) for c in cfgs], cfgs, examples),
                      args.rounds, n)
    one = time_epochs(Trainer([layers.build(p.spec, seed=0, init=p.init)], cfgs[:1], examples), args.rounds, n)
    ens["ratio_to_one"] = ens["s_per_epoch"] / one["s_per_epoch"]
    out["ensemble5[vmapped]"] = ens
    out["ensemble5[one net]"] = one
    return out


def replay(folder: Path, proc: subprocess.Popen, timeout: float) -> dict:
    from nn3.runs import inspect
    stdout, stderr = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the CPU run failed: {stderr.strip().splitlines()[-1:]}")
    made = json.loads(stdout.strip().splitlines()[-1])
    res = inspect.replay(folder / "cpu_run")
    return {"cpu_test_accuracy": made["test_accuracy"], "replayed_accuracy": res["accuracy"],
            "recorded": res["recorded"], "equal": res["equal"], "n": res["n"], "differs": res["differs"]}


def memory() -> dict:
    import jax
    import numpy as np
    device = next(iter(jax.device_put(np.zeros(())).devices()))  # the default device, where nn3 computed
    stats = device.memory_stats() or {}
    return {"peak_bytes_in_use": stats.get("peak_bytes_in_use"), "bytes_limit": stats.get("bytes_limit")}


def versions() -> dict:
    import jax
    out = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    for name in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt",
                 "flax", "orbax-checkpoint", "optax", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    d = jax.devices()[0]
    out.update(backend=jax.default_backend(), device=f"{d.platform}:{d.id}", device_kind=d.device_kind,
               device_count=jax.device_count())
    return out


def step(results, name, fn, *a):
    began = time.perf_counter()
    try:
        results[name] = fn(*a)
    except Exception as e:  # a step that fails is reported; the others still run
        results[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
    print(f"device_check: {name} done in {time.perf_counter() - began:.1f} s", flush=True)


def print_table(r: dict) -> None:
    v = r.get("versions", {})
    print(f"\n== nn3 device check: {v.get('device_kind', '?')} ({v.get('backend', '?')}), jax {v.get('jax', '?')}, "
          f"mode {r['mode']}, {r['seconds']:.0f} s in all")
    t = r.get("tests", {})
    if "error" in t:
        print(f"tests     error: {t['error']}")
    elif t:
        print(f"tests     {t.get('passed', 0)} passed, {t.get('failed', 0)} failed, {t.get('errors', 0)} errors, "
              f"{t.get('skipped', 0)} skipped ({t['which']}, {t['seconds']:.0f} s, rc {t['returncode']})")
        for line in t.get("failures", []):
            print(f"          {line}")
    s = r.get("speed", {})
    if "error" in s:
        print(f"speed     error: {s['error']}")
    else:
        print(f"{'row':28s} {'s/epoch':>8s} {'compile+1':>9s} {'eval 10k':>8s} {'acc':>7s}  images")
        for name, row in s.items():
            ev = f"{row['eval_10000_s']:8.3f}" if "eval_10000_s" in row else " " * 8
            acc = f"{row['test_accuracy']:7.4f}" if "test_accuracy" in row else " " * 7
            extra = f"  ({row['ratio_to_one']:.2f}x one net)" if "ratio_to_one" in row else ""
            print(f"{name:28s} {row['s_per_epoch']:8.3f} {row['compile_plus_one_s']:9.1f} {ev} {acc}  "
                  f"{row['images']}{extra}")
    p = r.get("replay", {})
    if "error" in p:
        print(f"replay    error: {p['error']}")
    elif p:
        print(f"replay    CPU run (n={p['n']}): {p['cpu_test_accuracy']:.4f} on CPU, {p['replayed_accuracy']:.4f} "
              f"here, equal {p['equal']}; differs: {', '.join(p['differs']) or 'nothing'}")
    m = r.get("memory", {})
    peak = m.get("peak_bytes_in_use")
    print(f"memory    peak {'n/a' if peak is None else f'{peak / 2**20:.0f} MiB'}"
          + ("" if m.get("bytes_limit") is None else f" of {m['bytes_limit'] / 2**30:.0f} GiB"))
    print("versions  " + ", ".join(f"{k} {v}" for k, v in v.items()))


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.cpu:
        os.environ["JAX_PLATFORMS"] = "cpu"  # before JAX starts, here and in the test subprocess
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU with the subprocesses
    began = time.perf_counter()
    results = {"mode": ("cpu " if args.cpu else "") + ("quick" if args.quick else "full"), "args": {
        k: v for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="nn3-device-check-") as tmp:
        proc = start_cpu_run(Path(tmp), args.sizes["cpu_run"], args.data)
        if args.tests != "none":
            step(results, "tests", run_tests, args.tests, 120 if args.quick else 240)
        sys.path.insert(0, str(ROOT))
        from nn3.store import data
        splits = data.load_data(args.data)  # a path's pickle may be of any size
        step(results, "speed", speed, args, splits)
        step(results, "replay", replay, Path(tmp), proc, 300)
        if proc.poll() is None:
            proc.kill()
    step(results, "memory", memory)
    step(results, "versions", versions)
    results["seconds"] = time.perf_counter() - began
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print_table(results)
    print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
