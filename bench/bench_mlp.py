"""Seconds per training epoch of the chapter-1 MLP: nn3 against two numpy references, in one run.

(a) reference_program.ProgramNetwork: the book's per-example backprop with network.py's
data layout and allocations, timed on a subset and scaled to the full training set;
(a') reference_network.BookNetwork: the same per-example arithmetic written lean (in-place
sums and updates, rows of one array); (b) reference_vectorised.VectorisedNetwork: the same
math with each mini-batch as a matrix; nn3 through its book façade ``nn3.network.Network``.
Quadratic cost, sigmoid, mini-batch 10, eta 3.0. Ratios are what to read: absolute numbers
drift with the machine's load.

Synopsis::

    python bench/bench_mlp.py                                  # [784,30,10] and [784,100,10]
    python bench/bench_mlp.py --sizes 784,30,10 --epochs 5 --json bench/out/mlp.json
    python bench/bench_mlp.py --cpu-threads all               # JAX's default pool, for comparison
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_mlp.py   # fair numpy
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from reference_network import BookNetwork  # noqa: E402
from reference_program import ProgramNetwork  # noqa: E402
from reference_vectorised import VectorisedNetwork  # noqa: E402

MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "XLA_FLAGS", "JAX_PLATFORMS")


def load():
    """The 1-minute load average, rounded; None on Windows, which has none."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def read_mnist_pickle(path: Path):
    """The book's mnist.pkl.gz -> (training, validation, test), after checking its SHA-256."""
    path = Path(path)
    if path.is_dir():
        path = path / "mnist.pkl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such MNIST file")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MNIST_SHA256:
        raise ValueError(f"{path}: SHA-256 {digest[:16]}... is not the book's mnist.pkl.gz")
    with gzip.open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def load_mnist(data: str | None):
    """(x_train, y_train, x_test, y_test, where) from --data, nn3.store.data, $NN3_DATA_DIR or ../shared."""
    if data:
        splits, where = read_mnist_pickle(Path(data)), str(data)
    else:
        splits = where = None
        try:
            from nn3.store import data as nn3_data
            splits, where = nn3_data.load_data(), "nn3.store.data.load_data()"
        except Exception as err:  # nn3 is still being written: fall back to the file
            print(f"data: nn3.store.data.load_data() unavailable ({type(err).__name__}); reading the file")
        if splits is None:
            candidates = [Path(os.environ["NN3_DATA_DIR"]) / "mnist.pkl.gz"] if os.environ.get(
                "NN3_DATA_DIR") else []
            candidates.append(BENCH_DIR.parent.parent / "shared" / "data" / "mnist.pkl.gz")
            found = [p for p in candidates if p.is_file()]
            if not found:
                raise FileNotFoundError("bench_mlp: no MNIST; pass --data or set NN3_DATA_DIR")
            splits, where = read_mnist_pickle(found[0]), str(found[0])
    training, _, test = splits
    x, y = (np.asarray(a) for a in training)
    xt, yt = (np.asarray(a) for a in test)
    # No copies (asarray, not astype): nn3 is timed on the arrays its loader hands out,
    # as a user's script would call it (read-only arrays go to the device once).
    return (np.asarray(x.reshape(len(x), -1), np.float32), y.reshape(-1).astype(np.int64),
            np.asarray(xt.reshape(len(xt), -1), np.float32), yt.reshape(-1).astype(np.int64), where)


def machine_facts() -> dict:
    """Cores, CPU, library versions, backend and the environment knobs that change speed."""
    facts = {"nproc": os.cpu_count(), "python": platform.python_version(),
             "numpy": np.__version__, "load_avg_1m": load()}
    if hasattr(os, "sched_getaffinity"):
        facts["usable_cores"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(Exception):
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        facts["numpy_blas"] = f"{blas['name']} {blas['version']}"
    try:
        import jax
        facts.update(jax=jax.__version__, backend=jax.default_backend(),
                     devices=[str(d) for d in jax.devices()])
    except Exception as err:
        facts["jax"] = f"not importable ({type(err).__name__})"
    facts["env"] = {k: os.environ.get(k) for k in ENV_VARS}
    return facts


def time_reference(cls, sizes, x, y, x_test, y_test, epochs: int, args) -> dict:
    """Trains a fresh reference network for ``epochs`` epochs on (x, y); seconds per epoch."""
    net = cls(sizes, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    xs, ys = x, y
    if hasattr(cls, "pairs"):  # the book's list of column pairs, built once as its loader does
        xs, ys = cls.pairs(x, y, sizes[-1]), None
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        net.sgd_epoch(xs, ys, args.mini_batch_size, args.eta, rng)
        times.append(time.perf_counter() - start)
    return {"measured_s_per_epoch": float(np.mean(times)), "epoch_times_s": times,
            "train_images": len(x), "test_correct": net.evaluate(x_test, y_test)}


def _sync(net, probe) -> None:
    """Waits until every JAX array reachable from ``net`` is computed; then a feedforward."""
    import jax
    seen, found, stack = set(), [], [(net, 0)]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen or depth > 8:
            continue
        seen.add(id(obj))
        try:
            leaves = jax.tree.leaves(obj)  # containers, nnx modules and variables are pytrees
        except Exception:
            leaves = [obj]
        if len(leaves) != 1 or leaves[0] is not obj:
            stack.extend((o, depth + 1) for o in leaves)
        elif isinstance(obj, jax.Array):
            found.append(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.extend((o, depth + 1) for o in vars(obj).values())
    jax.block_until_ready(found)
    with contextlib.suppress(Exception):  # the book's feedforward reads the latest weights
        np.asarray(net.feedforward(probe))


def time_nn3(sizes, x, y, x_test, y_test, args) -> dict:
    """nn3 façade: SGD(1 epoch) = compile + 1 epoch, then SGD(k epochs) / k = steady s/epoch."""
    try:
        from nn3 import network
    except Exception as err:
        return {"available": False, "why": f"{type(err).__name__}: {err}"}
    probe = x[:1].T.copy()  # one (784, 1) column, the book's input to feedforward
    try:
        net = network.Network(list(sizes), seed=args.seed)
        _sync(net, probe)  # compiles feedforward (used to sync) before anything is timed
        with contextlib.redirect_stdout(io.StringIO()):  # the "Epoch j complete" lines
            start = time.perf_counter()
            net.SGD((x, y), 1, args.mini_batch_size, args.eta, test_data=None)
            _sync(net, probe)
            first = time.perf_counter() - start
            start = time.perf_counter()
            net.SGD((x, y), args.epochs, args.mini_batch_size, args.eta, test_data=None)
            _sync(net, probe)
            steady = (time.perf_counter() - start) / args.epochs
    except Exception as err:  # still report the references
        return {"available": False, "why": f"failed: {type(err).__name__}: {err}"}
    result = {"available": True, "first_call_s": first, "s_per_epoch": steady,
              "compile_s": first - steady, "epochs": args.epochs, "test_correct": None}
    with contextlib.suppress(Exception):
        result["test_correct"] = int(net.evaluate((x_test, y_test)))
    return result


def _one_round(sizes, data, args) -> dict:
    x, y, x_test, y_test = data
    n = len(x)
    n_a = min(args.ref_subset, n)
    a = time_reference(ProgramNetwork, sizes, x[:n_a], y[:n_a], x_test, y_test, args.epochs_ref, args)
    lean = time_reference(BookNetwork, sizes, x[:n_a], y[:n_a], x_test, y_test, args.epochs_ref, args)
    for r in (a, lean):
        r["s_per_epoch"] = r["measured_s_per_epoch"] * n / n_a
        r["scaled_from"] = n_a
    b = time_reference(VectorisedNetwork, sizes, x, y, x_test, y_test, args.epochs_ref, args)
    b["s_per_epoch"] = b["measured_s_per_epoch"]
    nn3 = time_nn3(sizes, x, y, x_test, y_test, args) if not args.no_nn3 else {
        "available": False, "why": "--no-nn3"}
    return {"a_book_per_example": a, "a_lean_per_example": lean, "b_vectorised": b, "nn3": nn3}


ROWS = ("a_book_per_example", "a_lean_per_example", "b_vectorised", "nn3")


def bench_one(sizes, data, args) -> dict:
    """All implementations of one network, side by side, in ``--rounds`` interleaved rounds.

    Each row keeps its fastest round as ``s_per_epoch`` (the same rule for nn3 and the
    references) and lists every round in ``rounds_s``.
    """
    rounds = [_one_round(sizes, data, args) for _ in range(args.rounds)]
    out = {"sizes": list(sizes), "train_images": len(data[0]), "test_images": len(data[2])}
    for key in ROWS:
        runs = [r[key] for r in rounds]
        if not all(r.get("available", True) for r in runs):
            out[key] = next(r for r in runs if not r.get("available", True))
            continue
        best = dict(min(runs, key=lambda r: r["s_per_epoch"]))
        best["rounds_s"] = [r["s_per_epoch"] for r in runs]
        if key == "nn3":  # compiling happens in the first round; later rounds find it cached
            best["compile_s"], best["first_call_s"] = runs[0]["compile_s"], runs[0]["first_call_s"]
        out[key] = best
    return out


def print_table(res: dict, args) -> None:
    """One network's rows: s/epoch and how many times faster than (a) and (b)."""
    a, lean, b, nn3 = (res[k] for k in ROWS)
    n, n_test = res["train_images"], res["test_images"]
    print(f"\nMLP {res['sizes']}: quadratic cost, sigmoid, mini-batch {args.mini_batch_size}, "
          f"eta {args.eta}, {n} training images per epoch")
    print(f"  s/epoch = the fastest of {args.rounds} interleaved round(s) for every row; "
          "ratio = that reference's s/epoch / this row's (higher = faster)")
    print(f"  {'implementation':<34}{'s/epoch':>9}{'vs (a)':>9}{'vs (b)':>9}  {'test acc':>13}  note")
    subset = (f"{args.epochs_ref} epoch(s) on {a['scaled_from']} images, scaled x{n / a['scaled_from']:.1f}"
              f" to {n}; acc after subset training")
    rows = [("(a) network.py-shaped numpy", a, subset),
            ("(a') lean per-example numpy", lean, subset),
            ("(b) vectorised mini-batch numpy", b, f"{args.epochs_ref} full epoch(s)")]
    if nn3["available"]:
        rows.append(("nn3 (steady)", nn3, f"mean of {nn3['epochs']} epochs after the first call"))
    for name, r, note in rows:
        acc = "-" if r.get("test_correct") is None else f"{r['test_correct']}/{n_test}"
        if len(r.get("rounds_s", ())) > 1:
            note += "; rounds " + " ".join(f"{v:.3f}" for v in r["rounds_s"])
        print(f"  {name:<34}{r['s_per_epoch']:>9.3f}{a['s_per_epoch'] / r['s_per_epoch']:>8.1f}x"
              f"{b['s_per_epoch'] / r['s_per_epoch']:>8.2f}x  {acc:>13}  {note}")
    if not nn3["available"]:
        print(f"  nn3: not available yet ({nn3['why']})")
        return
    print(f"  nn3 compile ~ first round's first call - steady epoch = {nn3['compile_s']:.2f} s "
          f"(first call {nn3['first_call_s']:.2f} s; includes one-time data transfer)")
    speedup = a["s_per_epoch"] / nn3["s_per_epoch"]
    print(f"  targets: nn3 <= 0.15 s/epoch: {'met' if nn3['s_per_epoch'] <= 0.15 else 'NOT met'} "
          f"({nn3['s_per_epoch']:.3f}); >= 30x faster than (a): "
          f"{'met' if speedup >= 30 else 'NOT met'} ({speedup:.1f}x; "
          f"{lean['s_per_epoch'] / nn3['s_per_epoch']:.1f}x the lean (a'))")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=["784,30,10", "784,100,10"],
                   help="one or more comma-separated layer widths (default: both chapter-1 nets)")
    p.add_argument("--epochs-ref", type=int, default=1, help="epochs timed for (a) and (b)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each row keeps its fastest")
    p.add_argument("--epochs", type=int, default=5, help="steady epochs timed for nn3")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--ref-subset", type=int, default=5000, help="images (a) is timed on")
    p.add_argument("--mini-batch-size", type=int, default=10)
    p.add_argument("--eta", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="mnist.pkl.gz or a folder holding it")
    p.add_argument("--json", default=None, help="also write the results here as JSON")
    p.add_argument("--no-nn3", action="store_true", help="time only the numpy references")
    p.add_argument("--cpu-threads", default="auto",
                   help="JAX's CPU thread pool: auto (as nn3 train picks: 1 for these nets), all, or a number")
    args = p.parse_args(argv)
    try:
        args.sizes = [[int(s) for s in spec.split(",")] for spec in args.sizes]
    except ValueError:
        p.error(f"--sizes: expected comma-separated integers, got {args.sizes}")
    for name in ("epochs_ref", "epochs", "ref_subset", "mini_batch_size", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def start_jax(args) -> str:
    """Starts JAX with the CPU pool ``--cpu-threads`` asks for, before anything else runs.

    ``auto`` is what ``nn3 train`` picks for the first of ``--sizes`` (nn3.engine.threads):
    one thread for the chapter-1 nets. Returns how the pool was set, for the report.
    """
    try:
        from nn3.engine import threads
        from nn3.engine.spec import mlp_spec
    except Exception as err:
        return f"JAX default (nn3 not importable: {type(err).__name__})"
    if args.cpu_threads == "auto":
        n = threads.for_spec(mlp_spec(args.sizes[0], "QuadraticCost"), args.mini_batch_size)
    else:
        n = threads.parse(args.cpu_threads)
    if threads.limit(n):
        return f"{n} (--cpu-threads {args.cpu_threads})"
    return f"JAX default, all usable cores (--cpu-threads {args.cpu_threads})"


def main(argv=None) -> dict:
    args = parse_args(argv)
    pool = start_jax(args)
    facts = machine_facts()
    facts["jax_cpu_pool_threads"] = pool
    print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items() if k != "env"))
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        val = facts["env"][var]
        print(f"  {var}: " + (f"SET ({val}) - slows numpy; see bench/README.md" if val else "unset"))
    print("  numbers drift +-25% with load: compare the ratios, measured in this one run")
    *data, where = load_mnist(args.data)
    if args.limit:
        data[0], data[1] = data[0][:args.limit], data[1][:args.limit]
    print(f"data: {where}")
    results = [bench_one(sizes, data, args) for sizes in args.sizes]
    for res in results:
        print_table(res, args)
    report = {"machine": facts, "data": where, "config": {
        k: v for k, v in vars(args).items() if k not in ("json", "data")}, "results": results}
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1), encoding="utf-8")
        print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
