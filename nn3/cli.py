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


def _parser():
    p = _Parser(prog="nn3", description="The networks of Neural Networks and Deep Learning, on JAX.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("data", help="find, verify and describe the data")
    d.add_argument("--path", help="a data file or directory (default: $NN3_DATA_DIR, ./data)")
    d.add_argument("--dataset", default="mnist", choices=["mnist", "fashion"])
    d.add_argument("--fetch", action="store_true", help="download into ./data if missing")
    d.add_argument("--expand", metavar="OUT", help="write the book's mnist_expanded.pkl.gz to OUT")

    t = sub.add_parser("train", help="train a preset (see: nn3 presets)")
    t.add_argument("preset", nargs="?", help="a preset name; or give --config")
    t.add_argument("--config", help="a recorded config.json to run again")
    t.add_argument("--run", help="the run directory (default: checkpoints/PRESET-TIME)")
    t.add_argument("--epochs", type=_positive_int)
    t.add_argument("--eta", type=_number)
    t.add_argument("--lmbda", type=_number)
    t.add_argument("--momentum", type=_number)
    t.add_argument("--mini-batch", dest="mini_batch_size", type=_positive_int)
    t.add_argument("--seed", type=int)
    t.add_argument("--augment", choices=["none", "expand", "affine"])
    t.add_argument("--schedule", choices=["constant", "plateau"])
    t.add_argument("--early-stopping", type=_positive_int, metavar="N")
    t.add_argument("--chunks", type=_positive_int, help="compiled calls per epoch (progress steps)")
    t.add_argument("--dataset", default="mnist", choices=["mnist", "fashion"])
    t.add_argument("--data", help="a data file or directory")
    t.add_argument("--limit", type=_positive_int, metavar="N", help="use only the first N examples of each split")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("resume", help="carry on a run where it stopped")
    r.add_argument("run")
    r.add_argument("--epochs", type=_positive_int, help="train to this many epochs in all")
    r.add_argument("--quiet", action="store_true")

    for name, helptext in (("replay", "rebuild a run's network and evaluate it"),
                           ("export", "write a run's network as JSON")):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("run")
        if name == "export":
            q.add_argument("out")
        g = q.add_mutually_exclusive_group()
        g.add_argument("--step", type=int)
        g.add_argument("--best", action="store_true")
        if name == "replay":
            q.add_argument("--data", default="test", help="test | validation | a data file")
            q.add_argument("--predict", type=_positive_int, metavar="N",
                           help="also print the predicted digits of the first N images")

    i = sub.add_parser("import", help="start a run from a JSON network (then train it)")
    i.add_argument("json")
    i.add_argument("--run", required=True)
    i.add_argument("--epochs", type=_positive_int, default=None)
    i.add_argument("--eta", type=_number)
    i.add_argument("--limit", type=_positive_int, metavar="N", help="use only the first N examples of each split")

    e = sub.add_parser("evaluate", help="accuracy of a JSON network on the test data")
    e.add_argument("json")
    e.add_argument("--data", default=None, help="a data file or directory")

    pl = sub.add_parser("plot", help="PNGs of a run: learning curves, misclassified digits, filters")
    pl.add_argument("run")
    pl.add_argument("--out", help="folder for the PNGs (default: the run directory)")

    sub.add_parser("presets", help="list the book's experiments")

    sv = sub.add_parser("serve", help="a local page per run: curves, errors, filters, a digit to draw")
    sv.add_argument("runs", nargs="*", metavar="RUN",
                    help="run directories or directories of runs (default: checkpoints)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="interface to listen on (default: 127.0.0.1, this machine only)")
    sv.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    return p


def _say(*a):
    print(*a, flush=True)


def _reporter(style, before=None):
    """What a run prints per epoch: the lines of the book program the preset comes from.

    ``before`` runs first (it clears the progress bar, so the lines stand on their own).
    """
    def report(record, loop):
        if before:
            before()
        j = record["epoch"]
        if style == "network":
            _say(f"Epoch {j}: {record['test_correct']} / {record['test_n']}")
        elif style == "network2":
            _say(f"Epoch {j} training complete")
            _say(f"Accuracy on evaluation data: {record['validation_correct']} / {record['validation_n']}")
        else:
            _say(f"Epoch {j}: validation accuracy {record['validation_accuracy']:.2%}")
            if record["best"]:
                _say("This is the best validation accuracy to date.")
                _say(f"The corresponding test accuracy is {record['test_accuracy']:.2%}")
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
    return {"nan": EXIT_DIVERGED, "interrupted": EXIT_INTERRUPTED}.get(loop.stop_reason, 0)


def _threads(config) -> None:
    """Start JAX with the CPU pool that suits the run's network (see nn3.threads)."""
    from nn3 import threads
    m = (config.get("sgd") or {}).get("mini_batch_size", 10)
    threads.limit(threads.for_spec(config.get("spec"), m if isinstance(m, int) and m > 0 else 10))


def cmd_train(a):
    from nn3 import runs
    if a.config:
        try:
            recorded = json.loads(Path(a.config).read_text())
            preset, spec = recorded["preset"], recorded["spec"]
            base = dict(recorded["sgd"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{a.config}: not a usable nn3 config ({type(e).__name__}: {e})") from None
        from nn3 import export
        export.validate_spec(spec, a.config)
        init, dataset, data_path = recorded.get("init"), recorded.get("dataset", "mnist"), recorded.get("data")
        limit = a.limit or recorded.get("limit")
    elif a.preset:
        preset, spec, base, init, dataset, data_path, limit = a.preset, None, {}, None, a.dataset, a.data, a.limit
    else:
        raise UsageError("nn3 train: give a preset name or --config FILE")
    over = {k: getattr(a, k) for k in ("epochs", "eta", "lmbda", "momentum", "mini_batch_size", "seed",
                                       "augment", "schedule", "chunks") if getattr(a, k) is not None}
    if a.early_stopping is not None:
        over["early_stopping"] = a.early_stopping
    config = runs.make_config(preset, spec=spec, init=init, dataset=dataset, data_path=data_path, limit=limit,
                              **{**base, **over})
    run_dir = a.run or f"checkpoints/{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    _threads(config)
    tick, close = _progress(a.quiet)
    started = time.time()
    try:
        run, _, loop = runs.start(config, run_dir, report=_reporter(config["style"], close), on_progress=tick)
    finally:
        close()
    run.close()
    return _finish(loop, run_dir, started)


def cmd_resume(a):
    from nn3 import runs
    tick, close = _progress(a.quiet)
    started = time.time()
    from nn3.checkpoint import Run
    recorded = Run.read_config(a.run)
    style = recorded.get("style", "network3")
    _threads(recorded)
    try:
        run, _, loop = runs.resume(a.run, epochs=a.epochs, report=_reporter(style, close), on_progress=tick)
    finally:
        close()
    run.close()
    return _finish(loop, a.run, started)


def cmd_replay(a):
    from nn3 import runs, train
    res = runs.replay(a.run, step=a.step, best=a.best, data_name=a.data)
    _say(f"step {res['step']} (epoch {res['epoch']}): {a.data} accuracy {res['accuracy']:.2%} "
         f"({res['correct']} / {res['n']})")
    if res["recorded"] is not None:
        verdict = "equal" if res["equal"] else "DIFFERENT"
        _say(f"recorded at save time: {res['recorded']:.2%} -- {verdict}")
    if a.predict:
        from nn3 import data
        splits = data.load_data() if a.data in ("test", "validation") else data.load_data(a.data)
        x, y = splits[2] if a.data != "validation" else splits[1]
        pred = train.predict(res["net"], x[:a.predict])
        _say("predicted: " + " ".join(str(int(v)) for v in pred))
        _say("labels:    " + " ".join(str(int(v)) for v in y[:a.predict]))
    return 0 if res["recorded"] is None or res["equal"] else EXIT_FAULT


def _takes_mnist(net, source):
    if net.n_in != 784:
        raise ValueError(f"{source}: the network takes {net.n_in} inputs; MNIST images have 784")


def cmd_export(a):
    from nn3 import export, layers, runs
    if not Path(a.out).resolve().parent.is_dir():
        raise ValueError(f"{a.out}: its folder {Path(a.out).resolve().parent} does not exist")
    net = runs.load(a.run, step=a.step, best=a.best)
    from nn3.checkpoint import Run
    mb = Run.read_config(a.run)["sgd"].get("mini_batch_size")
    export.save_json(a.out, net.spec, layers.get_params(net), None if layers.is_mlp(net.spec) else mb)
    _say(f"wrote {a.out}")
    return 0


def cmd_import(a):
    from nn3 import export, layers, runs
    spec, params, mb = export.load_json(a.json)
    _takes_mnist(layers.build(spec), a.json)
    preset = "ch3" if layers.is_mlp(spec) else "dbl_conv_relu"
    over = {k: v for k, v in (("epochs", a.epochs), ("eta", a.eta)) if v is not None}
    if mb:
        over["mini_batch_size"] = mb
    config = runs.make_config(preset, spec=spec, limit=a.limit, **over)
    config["imported_from"] = str(a.json)
    started = time.time()
    run, _, loop = runs.start(config, a.run, params=params, report=_reporter(config["style"]))
    run.close()
    return _finish(loop, a.run, started)


def cmd_evaluate(a):
    from nn3 import data, export, layers, train
    spec, params, _ = export.load_json(a.json)
    net = layers.build(spec)
    _takes_mnist(net, a.json)
    layers.set_params(net, params)
    right, _, n = train.evaluate(net, data.load_data(a.data)[2])
    _say(f"{a.json}: test accuracy {right / n:.2%} ({right} / {n})")
    return 0


def cmd_data(a):
    from nn3 import data
    if a.expand:
        data.write_expanded(a.expand, a.path)
        _say(f"wrote {a.expand}")
        return 0
    for line in data.describe(a.path, dataset=a.dataset, fetch=a.fetch):
        _say(line)
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
    finally:
        run.close()
    net = runs.load(a.run)
    plots.learning_curves(history, out / "curves.png", title=config.get("preset"))
    wrong = plots.misclassified(net, runs.load_splits(config)[2], out / "misclassified.png")
    made = ["curves.png", f"misclassified.png ({wrong} wrong)"]
    if any(l["type"] == "ConvPoolLayer" for l in net.spec["layers"]):
        plots.filters(net, out / "filters.png")
        made.append("filters.png")
    _say(f"wrote in {out}: " + ", ".join(made))
    return 0


def cmd_serve(a):
    from nn3 import serve
    if not 0 <= a.port <= 65535:
        raise ValueError(f"--port: {a.port} is not a port number (0-65535; 0 picks a free one)")
    serve.serve(a.runs or ["checkpoints"], host=a.host, port=a.port, say=_say)
    return 0


def cmd_presets(a):
    from nn3 import presets
    for p in presets.PRESETS.values():
        _say(f"{p.name:20s} {p.about}  [book: {p.book}]")
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
    try:
        with _one_line_warnings():
            a = _parser().parse_args(argv)
            if a.command not in ("presets",):
                _compile_cache()
            return globals()[f"cmd_{a.command}"](a)
    except UsageError as e:
        print(f"{e}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError) as e:  # DataError, ExportError, CheckpointError are ValueErrors
        print(f"nn3: error: {_first_line(e)}", file=sys.stderr)
        return EXIT_FAULT
    except KeyboardInterrupt:  # outside training (loading data, compiling): nothing to save
        print("nn3: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug: still one line, unless NN3_DEBUG asks for the traceback
        if os.environ.get("NN3_DEBUG"):
            raise
        print(f"nn3: internal error (a bug; NN3_DEBUG=1 shows the traceback): {type(e).__name__}: "
              f"{_first_line(e)}", file=sys.stderr)
        return EXIT_FAULT


if __name__ == "__main__":
    sys.exit(main())
