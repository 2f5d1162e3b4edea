"""The ``nn3`` command: train, resume, replay, export, import, data, presets.

    $ nn3 train ch1                        # the book's chapter-1 network, 30 epochs
    $ nn3 resume checkpoints/ch1-...       # carry on where it stopped
    $ nn3 replay checkpoints/ch1-... --best

Kept thin on purpose: it parses arguments and calls nn3.runs, nn3.export and nn3.data.
Every fault the user can cause ends in one line on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path

EXIT_USAGE, EXIT_FAULT, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 1, 3, 130


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{self.prog}: {message}")


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def _number(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return v


MONITORS = ("training_accuracy", "training_cost", "validation_cost")


def _training_flags(p, source, recorded=""):
    """The flags that set how a network trains: ``train`` and ``import`` share them.

    ``source`` says where an unset setting comes from (a preset, the imported net);
    ``recorded`` is added to the data flags' defaults (", or the config's").
    """
    d = f"default: {source}"
    p.add_argument("--epochs", type=_positive_int, help=f"epochs to train ({d})")
    p.add_argument("--eta", type=_number, help=f"learning rate ({d})")
    p.add_argument("--lmbda", type=_number, help=f"L2 regularisation strength ({d})")
    p.add_argument("--momentum", type=_number, help=f"momentum coefficient, 0 for plain SGD ({d})")
    p.add_argument("--optimizer", metavar="NAME", help="sgd (the book's rule) or one of optax's: adam, rmsprop, "
                   f"..., with --eta as its learning rate (default: {source}, else sgd)")
    p.add_argument("--mini-batch", dest="mini_batch_size", type=_positive_int, metavar="N",
                   help=f"mini-batch size ({d})")
    p.add_argument("--seed", type=int, help=f"seed of every random draw ({d})")
    p.add_argument("--augment", choices=["none", "expand", "affine"],
                   help=f"training data made on the fly: the book's expansion or random affine maps ({d})")
    p.add_argument("--schedule", choices=["constant", "plateau"],
                   help=f"eta: constant, or halved after 10 epochs without a new best ({d})")
    p.add_argument("--early-stopping", type=_positive_int, metavar="N",
                   help=f"stop after N epochs without a new best ({d})")
    p.add_argument("--monitor", action="append", choices=MONITORS,
                   help="also measure this each epoch (network2's monitors); repeat for more "
                        "(default: none)")
    p.add_argument("--chunks", type=_positive_int, metavar="N",
                   help="compiled calls per epoch, the progress bar's steps (default: automatic)")
    p.add_argument("--dataset", choices=["mnist", "fashion"], help=f"the data set (default: mnist{recorded})")
    p.add_argument("--data", metavar="PATH",
                   help=f"a data file or directory (default: $NN3_DATA_DIR, then ./data{recorded})")
    p.add_argument("--limit", type=_positive_int, metavar="N",
                   help=f"use only the first N examples of each split (default: all{recorded})")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on a terminal)")


def _data_choice(p):
    """``--data`` of the commands that evaluate a network (replay, evaluate): they agree."""
    p.add_argument("--data", default="test", metavar="WHICH",
                   help="test | validation | a data file or directory, whose test split is used "
                        "(default: test)")


def _version() -> str:
    import importlib.metadata

    from nn3 import __version__

    def v(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"
    return f"nn3 {__version__} (jax {v('jax')}, flax {v('flax')}, orbax-checkpoint {v('orbax-checkpoint')})"


def _parser():
    p = _Parser(prog="nn3", description="The networks of Neural Networks and Deep Learning, on JAX.")
    p.add_argument("--version", action="version", version=_version(), help="print the versions and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    d = sub.add_parser("data", help="find, verify and describe the data",
                       description="Find, verify and describe the data (or fetch it, or write the expanded set).")
    d.add_argument("--path", help="a data file or directory (default: $NN3_DATA_DIR, then ./data)")
    d.add_argument("--dataset", default="mnist", choices=["mnist", "fashion"], help="the data set (default: mnist)")
    d.add_argument("--fetch", action="store_true", help="download into ./data if missing (default: off)")
    d.add_argument("--expand", metavar="OUT",
                   help="write the book's mnist_expanded.pkl.gz to OUT (default: off)")

    t = sub.add_parser("train", help="train a preset (see: nn3 presets)",
                       description="Train a preset, or a recorded config again, in a run directory.")
    t.add_argument("preset", nargs="?", help="a preset name (see: nn3 presets); or give --config")
    t.add_argument("--config", metavar="FILE",
                   help="a run's config.json, or its run directory, to train again (default: none)")
    t.add_argument("--run", metavar="DIR", help="the run directory (default: checkpoints/PRESET-TIME)")
    _training_flags(t, "the preset's, or the config's", ", or the config's")

    r = sub.add_parser("resume", help="carry on a run where it stopped",
                       description="Carry on a run where it stopped (bit for bit the run that never stopped).")
    r.add_argument("run", help="the run directory")
    r.add_argument("--epochs", type=_positive_int, help="train to this many epochs in all (default: the run's)")
    r.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on a terminal)")

    for name, helptext in (("replay", "rebuild a run's network and evaluate it"),
                           ("export", "write a run's network as JSON")):
        q = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        q.add_argument("run", help="the run directory")
        if name == "export":
            q.add_argument("out", help="the JSON file to write")
            q.add_argument("--force", action="store_true", help="replace OUT if it exists (default: refuse)")
        g = q.add_mutually_exclusive_group()
        g.add_argument("--step", type=int, help="the checkpoint at this step (default: the newest)")
        g.add_argument("--best", action="store_true",
                       help="the checkpoint of the best validation accuracy (default: the newest)")
        if name == "replay":
            _data_choice(q)
            q.add_argument("--predict", type=_positive_int, metavar="N",
                           help="also print the predicted digits of the first N images of that data "
                                "(default: none)")

    i = sub.add_parser("import", help="start a run from a JSON network (then train it)",
                       description="Start a run from a JSON network and train it. Unset flags come from "
                                   "the preset whose network it is, else from the book's plain settings "
                                   "for its kind of network (a network3 JSON keeps its mini-batch size); the settings are printed "
                                   "before training.")
    i.add_argument("json", help="a network2 or nn3 JSON file")
    i.add_argument("--run", required=True, metavar="DIR", help="the run directory to create (required)")
    _training_flags(i, "the matching preset's, else plain settings")

    e = sub.add_parser("evaluate", help="accuracy of a JSON network on the test or validation data",
                       description="The accuracy of a JSON network on a data set.")
    e.add_argument("json", help="a network2 or nn3 JSON file")
    _data_choice(e)
    e.add_argument("--dataset", default="mnist", choices=["mnist", "fashion"],
                   help="the data set of test | validation (default: mnist)")

    pl = sub.add_parser("plot", help="PNGs of a run: learning curves, misclassified digits, filters",
                        description="PNGs of a run: learning curves, the newest checkpoint's misclassified "
                                    "test digits, and its first-layer filters (conv nets).")
    pl.add_argument("run", help="the run directory")
    pl.add_argument("--out", metavar="DIR", help="folder for the PNGs (default: the run directory)")

    sub.add_parser("presets", help="list the book's experiments and their settings",
                   description="The book's experiments: epochs, eta, lmbda, data, and the book's result.")
    return p


def _say(*a):
    print(*a, flush=True)


def _monitored(record, monitor):
    """network2's lines for the monitors a run asked for (``--monitor``), in the book's order."""
    if "training_cost" in monitor:
        _say(f"Cost on training data: {record['training_cost']}")
    if "training_accuracy" in monitor:
        _say(f"Accuracy on training data: {record['training_correct']} / {record['training_n']}")
    if "validation_cost" in monitor:
        _say(f"Cost on evaluation data: {record['validation_cost']}")


def _reporter(style, before=None, monitor=()):
    """What a run prints per epoch: the lines of the book program the preset comes from.

    ``before`` runs first (it clears the progress bar, so the lines stand on their own).
    """
    def report(record, loop):
        if before:
            before()
        j = record["epoch"]
        if style == "network":
            _say(f"Epoch {j}: {record['test_correct']} / {record['test_n']}")
            _monitored(record, monitor)
        elif style == "network2":
            _say(f"Epoch {j} training complete")
            _monitored(record, monitor)
            _say(f"Accuracy on evaluation data: {record['validation_correct']} / {record['validation_n']}")
        else:
            _say(f"Epoch {j}: validation accuracy {record['validation_accuracy']:.2%}")
            if record["best"]:
                _say("This is the best validation accuracy to date.")
                _say(f"The corresponding test accuracy is {record['test_accuracy']:.2%}")
            _monitored(record, monitor)
    return report


def _progress(quiet):
    """A progress bar per epoch on stderr (when it is a terminal): (tick, close)."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm
    bar = [None]

    def tick(n, per_epoch):
        if bar[0] is None:
            bar[0] = tqdm(total=per_epoch, unit="batch", leave=False, disable=None, dynamic_ncols=True)
        bar[0].update(n)

    def close():
        if bar[0] is not None:
            bar[0].close()
            bar[0] = None
    return tick, close


def _finish(loop, run_dir, started):
    from nn3 import runs
    best = next((r for r in loop.history if r["epoch"] == loop.best_epoch), None)
    if best:
        _say(f"Best validation accuracy {best.get('validation_accuracy', 0):.2%} at epoch {best['epoch']}"
             f" (test {best.get('test_accuracy', float('nan')):.2%}); {time.time() - started:.1f} s")
    _say(f"run directory: {run_dir}")
    msg = runs.stop_message(loop, run_dir)
    if msg:
        print(f"nn3: {msg}", file=sys.stderr)
    if loop.stop_reason == "interrupted":
        from nn3 import stop
        return stop.exit_code(stop.requested() or signal.SIGINT)
    return {"nan": EXIT_DIVERGED}.get(loop.stop_reason, 0)


def _threads(config) -> None:
    """Start JAX with the CPU pool that suits the run's network (see nn3.threads)."""
    from nn3 import threads
    m = (config.get("sgd") or {}).get("mini_batch_size", 10)
    threads.limit(threads.for_spec(config.get("spec"), m if isinstance(m, int) and m > 0 else 10))


SETTINGS = ("epochs", "eta", "lmbda", "momentum", "mini_batch_size", "seed", "augment", "schedule",
            "early_stopping", "chunks", "optimizer")


def _overrides(a) -> dict:
    """The training settings given as flags (see _training_flags)."""
    return {k: getattr(a, k) for k in SETTINGS if getattr(a, k) is not None}


def _read_config(where) -> dict:
    """A recorded config: a config.json, or the run directory that holds one."""
    from nn3.checkpoint import CONFIG
    path = Path(where)
    if path.is_dir():
        path = path / CONFIG
        if not path.is_file():
            raise ValueError(f"{where}: a directory without {CONFIG}; give a run directory or a config.json")
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{where}: not a usable nn3 config ({type(e).__name__}: {e})") from None
    if not (isinstance(recorded, dict) and "preset" in recorded and "spec" in recorded
            and isinstance(recorded.get("sgd"), dict)):
        raise ValueError(f"{where}: not a usable nn3 config (expected an object with preset, spec and sgd)")
    return recorded


def _start(config, run_dir, quiet, params=None):
    """Train ``config`` in a new ``run_dir`` (from ``params`` if given): train's and import's end."""
    from nn3 import runs
    _threads(config)
    from nn3 import backend
    _say(backend.describe())  # after _threads: JAX starts here
    tick, close = _progress(quiet)
    started = time.time()
    try:
        run, _, loop = runs.start(config, run_dir, params=params, on_progress=tick,
                                  report=_reporter(config["style"], close, config["monitor"]))
    finally:
        close()
    run.close()
    return _finish(loop, run_dir, started)


def cmd_train(a):
    from nn3 import runs
    if a.config:
        recorded = _read_config(a.config)
        preset, spec, base = recorded["preset"], recorded["spec"], dict(recorded["sgd"])
        from nn3 import export
        export.validate_spec(spec, a.config)
        init = recorded.get("init")
        dataset = a.dataset or recorded.get("dataset", "mnist")
        data_path = a.data or recorded.get("data")
        limit = a.limit or recorded.get("limit")
        monitor = a.monitor or recorded.get("monitor") or []
    elif a.preset:
        preset, spec, base, init = a.preset, None, {}, None
        dataset, data_path, limit, monitor = a.dataset or "mnist", a.data, a.limit, a.monitor or []
    else:
        raise UsageError("nn3 train: give a preset name or --config FILE")
    config = runs.make_config(preset, spec=spec, init=init, dataset=dataset, data_path=data_path, limit=limit,
                              **{**base, **_overrides(a)})
    config["monitor"] = list(dict.fromkeys(monitor))
    return _start(config, a.run or f"checkpoints/{preset}-{time.strftime('%Y%m%d-%H%M%S')}", a.quiet)


def cmd_resume(a):
    from nn3 import runs
    tick, close = _progress(a.quiet)
    started = time.time()
    from nn3.checkpoint import Run
    recorded = Run.read_config(a.run)
    style = recorded.get("style", "network3")
    _threads(recorded)
    try:
        run, _, loop = runs.resume(a.run, epochs=a.epochs, on_progress=tick,
                                   report=_reporter(style, close, recorded.get("monitor", ())))
    finally:
        close()
    run.close()
    return _finish(loop, a.run, started)


def cmd_replay(a):
    from nn3 import runs, train
    res = runs.replay(a.run, step=a.step, best=a.best, data_name=a.data)
    _say(f"step {res['step']} ({res['position']}): {a.data} accuracy {res['accuracy']:.2%} "
         f"({res['correct']} / {res['n']})")
    if res["recorded"] is not None:
        verdict = "equal" if res["equal"] else "DIFFERENT"
        _say(f"recorded at save time: {res['recorded']:.2%} -- {verdict}")
    elif res["batch"] and a.data in ("test", "validation"):
        _say("no accuracy was recorded for this step: it was saved mid-epoch (an interruption), "
             "and accuracies are measured when an epoch ends")
    if a.predict:  # the images the accuracy above was measured on: the run's data set, path and limit
        from nn3 import data
        from nn3.checkpoint import Run
        if a.data in ("test", "validation"):
            x, y = runs.load_splits(Run.read_config(a.run))[2 if a.data == "test" else 1]
        else:
            x, y = data.load_data(a.data)[2]
        pred = train.predict(res["net"], x[:a.predict])
        _say("predicted: " + " ".join(str(int(v)) for v in pred))
        _say("labels:    " + " ".join(str(int(v)) for v in y[:a.predict]))
    return 0 if res["recorded"] is None or res["equal"] else EXIT_FAULT


def _takes_mnist(net, source):
    if net.n_in != 784:
        raise ValueError(f"{source}: the network takes {net.n_in} inputs; MNIST images have 784")


def cmd_export(a):
    from nn3 import export, layers, runs
    out = Path(a.out)
    if out.is_dir():
        raise ValueError(f"{a.out}: is a directory; give the file to write, e.g. {out / 'net.json'}")
    if out.exists() and not a.force:
        raise ValueError(f"{a.out}: exists; pass --force to replace it")
    if not out.resolve().parent.is_dir():
        raise ValueError(f"{a.out}: its folder {out.resolve().parent} does not exist")
    net = runs.load(a.run, step=a.step, best=a.best)
    from nn3.checkpoint import Run
    mb = Run.read_config(a.run)["sgd"].get("mini_batch_size")
    export.save_json(a.out, net.spec, layers.get_params(net), None if layers.is_mlp(net.spec) else mb)
    _say(f"wrote {a.out}")
    return 0


def _flag(setting: str) -> str:
    return "--mini-batch" if setting == "mini_batch_size" else "--" + setting.replace("_", "-")


def _settings(config) -> str:
    """The settings a run trains with, in one line (what ``import`` prints before training)."""
    from nn3 import train
    c = train.SGDConfig(**config["sgd"])
    data = config["dataset"] + (f" from {config['data']}" if config["data"] else "")
    if config["limit"]:
        data += f", the first {config['limit']} of each split"
    return (f"epochs {c.epochs}, mini-batch {c.mini_batch_size}, eta {c.eta:g}, lmbda {c.lmbda:g}, "
            f"momentum {c.momentum:g}, augment {c.augment}, schedule {c.schedule}, "
            f"early stopping {c.early_stopping or 'off'}, seed {c.seed}; data: {data}; "
            f"monitor: {', '.join(config['monitor']) or 'none'}")


def cmd_import(a):
    from nn3 import export, layers, presets, runs
    spec, params, mb = export.load_json(a.json)
    _takes_mnist(layers.build(spec), a.json)
    preset, plain, why = presets.for_network(spec)
    over = _overrides(a)
    config = runs.make_config(preset, spec=spec, dataset=a.dataset or "mnist", data_path=a.data, limit=a.limit,
                              **{**plain, **({"mini_batch_size": mb} if mb else {}), **over})
    config["monitor"] = list(dict.fromkeys(a.monitor or []))
    config["imported_from"] = str(a.json)
    given = ", ".join(_flag(k) for k in over)
    _say(f"importing {a.json}: {why}" + (f", with {given} as given" if given else ""))
    _say(f"settings: {_settings(config)}")
    return _start(config, a.run, a.quiet, params=params)


def cmd_evaluate(a):
    from nn3 import data, export, layers, train
    spec, params, _ = export.load_json(a.json)
    net = layers.build(spec)
    _takes_mnist(net, a.json)
    layers.set_params(net, params)
    if a.data in ("test", "validation"):
        split, name = data.load_data(dataset=a.dataset)[2 if a.data == "test" else 1], a.data
    else:
        split, name = data.load_data(a.data, dataset=a.dataset)[2], f"{a.data} test"
    right, _, n = train.evaluate(net, split)
    _say(f"{a.json}: {name} accuracy {right / n:.2%} ({right} / {n})")
    return 0


def cmd_data(a):
    from nn3 import data
    if a.expand:
        data.write_expanded(a.expand, a.path)
        _say(f"wrote {a.expand}")
        return 0
    for line in data.describe(a.path, dataset=a.dataset, fetch=a.fetch):
        _say(line)
    from nn3 import backend
    _say(backend.describe())
    return 0


def cmd_plot(a):
    from nn3 import plots, runs
    from nn3.checkpoint import Run
    out = Path(a.out or a.run)
    out.mkdir(parents=True, exist_ok=True)
    run = Run.open(a.run, read_only=True)
    try:
        history = run.read_metrics()
        config = run.config
        step, net, loop, _ = runs.restore(run)
    finally:
        run.close()
    plots.learning_curves(history, out / "curves.png", title=config.get("preset"))
    which = f"{runs.position(loop)} (step {step})"
    wrong = plots.misclassified(net, runs.load_splits(config)[2], out / "misclassified.png", which=which)
    measured = any(r.get("training_accuracy") is not None for r in history)
    made = ["curves.png" if measured else "curves.png (no training accuracy: --monitor training_accuracy "
            "measures it)", f"misclassified.png ({wrong} wrong, {which})"]
    if any(l["type"] == "ConvPoolLayer" for l in net.spec["layers"]):
        plots.filters(net, out / "filters.png")
        made.append("filters.png")
    _say(f"wrote in {out}: " + ", ".join(made))
    return 0


def cmd_presets(a):
    from nn3 import presets
    for line in presets.table():
        _say(line)
    return 0


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


@contextlib.contextmanager
def _one_line_warnings():
    """nn3's own warnings (a damaged checkpoint skipped) as one ``nn3: warning:`` line."""
    previous = warnings.showwarning
    here = str(Path(__file__).resolve().parent)

    def show(message, category, filename, lineno, file=None, line=None):
        if category is UserWarning and str(Path(filename).resolve()).startswith(here):
            print(f"nn3: warning: {_first_line(Warning(str(message)))}",
                  file=sys.stderr, flush=True)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _compile_cache():
    """With ``$NN3_CACHE_DIR`` set, keep XLA's compiled programs there between commands.

    A replay or a resume then skips the compiles its training run already did (about
    0.7 s of a conv net's replay; nothing measurable for the MLP). Off by default: once,
    a replay right after a long run took 10 minutes with the cache on, and we have not
    found why. The same program gives the same numbers, compiled now or read back.
    """
    where = os.environ.get("NN3_CACHE_DIR", "")
    if not where:
        return
    import jax
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def main(argv=None) -> int:
    from nn3 import stop  # no JAX: the handlers are in place before anything heavy is imported
    stop.clear()
    try:
        with stop.handlers(raising=True), _one_line_warnings():
            a = _parser().parse_args(argv)
            if a.command not in ("presets",):
                _compile_cache()
            return globals()[f"cmd_{a.command}"](a)
    except KeyboardInterrupt:  # before training began (importing, loading data, compiling): nothing to save
        signum = stop.requested() or signal.SIGINT
        print(f"nn3: interrupted ({stop.name(signum)}) before training began; nothing was written",
              file=sys.stderr)
        return stop.exit_code(signum)
    except UsageError as e:
        print(f"{e}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError) as e:  # DataError, ExportError, CheckpointError are ValueErrors
        print(f"nn3: error: {_first_line(e)}", file=sys.stderr)
        return EXIT_FAULT
    except Exception as e:  # a bug: still one line, unless NN3_DEBUG asks for the traceback
        if os.environ.get("NN3_DEBUG"):
            raise
        print(f"nn3: internal error (a bug; NN3_DEBUG=1 shows the traceback): {type(e).__name__}: "
              f"{_first_line(e)}", file=sys.stderr)
        return EXIT_FAULT


if __name__ == "__main__":
    sys.exit(main())
