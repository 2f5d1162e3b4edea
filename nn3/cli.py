"""The ``nn3`` command: train, resume, replay, export, import, data, presets.

    $ nn3 train ch1                        # the book's chapter-1 network, 30 epochs
    $ nn3 resume checkpoints/ch1-...       # carry on where it stopped
    $ nn3 replay checkpoints/ch1-... --best

Kept thin on purpose: each command parses its flags and makes one call into nn3.runs
(or nn3.data, nn3.plots, nn3.presets), then prints what it got.
Every fault the user can cause ends in one line on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import codecs
import contextlib
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


def _seeds(text):
    try:
        seeds = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be integers >= 0, got {text}")
    return seeds


def _sweep(text):
    name, eq, values = text.partition("=")
    if not eq or not values:
        raise argparse.ArgumentTypeError(f"give NAME=V,V,..., got {text!r}")
    return name.strip(), [_number(v) for v in values.split(",")]


MONITORS = ("training_accuracy", "training_cost", "validation_cost")


def _training_flags(p, source, recorded=""):
    """The flags that set how a network trains: ``train`` and ``import`` share them.

    ``source`` says where an unset setting comes from (a preset, the imported net);
    ``recorded`` is added to the data flags' defaults (", or the config's").
    """
    d = f"default: {source}"
    m = p.add_mutually_exclusive_group()
    m.add_argument("--members", type=_positive_int, metavar="N",
                   help="train N networks (seeds 0..N-1) as one run that votes (default: one network)")
    m.add_argument("--seeds", type=_seeds, metavar="S,S,...",
                   help="train one network per seed as one run that votes (default: one network)")
    p.add_argument("--sweep", type=_sweep, action="append", metavar="NAME=V,V",
                   help="one member per value (times each seed) of eta, lmbda, momentum or l1, all in one "
                        "program; repeat for every combination (default: none)")
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
                           ("export", "write a run's network (a member run's: its ensemble) as JSON")):
        q = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        q.add_argument("run", help="the run directory")
        if name == "export":
            q.add_argument("out", help="the JSON file to write")
            q.add_argument("--force", action="store_true", help="replace OUT if it exists (default: refuse)")
        q.add_argument("--member", type=int, metavar="K",
                       help="of a member run, member K alone (counted from 0) (default: "
                            + ("every member, as one ensemble bundle that nn3 evaluate and nn3.load read)"
                               if name == "export" else "each member and the vote)"))
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

    e = sub.add_parser("evaluate", help="accuracy of a JSON network or ensemble bundle on the test or "
                                        "validation data",
                       description="The accuracy of a JSON network on a data set; of an ensemble bundle "
                                   "(nn3 export of a member run), each member's and the vote's.")
    e.add_argument("json", help="a network2 or nn3 JSON file, or an ensemble bundle")
    _data_choice(e)
    e.add_argument("--dataset", default="mnist", choices=["mnist", "fashion"],
                   help="the data set of test | validation (default: mnist)")

    pl = sub.add_parser("plot", help="PNGs of a run: learning curves, misclassified digits, filters",
                        description="PNGs of a run: learning curves, the newest checkpoint's misclassified "
                                    "test digits, and its first-layer filters (conv nets).")
    pl.add_argument("run", help="the run directory")
    pl.add_argument("--out", metavar="DIR", help="folder for the PNGs (default: the run directory)")

    b = sub.add_parser("book", help="train every row of the book's table and report it beside the book",
                       description="Train each result of the book's table with the book's settings (a run "
                                   "directory per row: a second call skips the done rows and resumes a stopped "
                                   "one) and write REPORT.md and figures/ in the book's folder.")
    b.add_argument("--dir", metavar="BOOKDIR",
                   help="the book's folder (default: checkpoints/book; with --quick checkpoints/book-quick)")
    w = b.add_mutually_exclusive_group()
    w.add_argument("--rows", metavar="R,R,...", help="only these rows, by name (default: the book's table)")
    w.add_argument("--beyond", action="store_true",
                   help="the rows that aim past the book's best instead (default: the book's table)")
    b.add_argument("--seeds", type=_seeds, metavar="S,S,...",
                   help="one run per seed; the report quotes the best, as the book's best of three (default: 0)")
    b.add_argument("--quick", action="store_true",
                   help="every row for one epoch on the first 100 examples of each split (default: off)")
    b.add_argument("--data", metavar="PATH", help="a data file or directory (default: $NN3_DATA_DIR, then ./data)")
    b.add_argument("--report-only", action="store_true",
                   help="write REPORT.md and figures/ from the runs there; train nothing (default: off)")

    sub.add_parser("presets", help="list the book's experiments and their settings",
                   description="The book's experiments: epochs, eta, lmbda, data, and the book's result.")

    sv = sub.add_parser("serve", help="a local page per run: curves, errors, filters, a digit to draw")
    sv.add_argument("runs", nargs="*", metavar="RUN",
                    help="run directories or directories of runs (default: checkpoints)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="interface to listen on (default: 127.0.0.1, this machine only)")
    sv.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    return p


def _say(*a):
    print(*a, flush=True)


def _reporter(style, before=None, monitor=()):
    """What a run prints per epoch: the lines of the book program the preset comes from
    (nn3.facade.epoch_lines, which the façades print too), with the monitors it asked for;
    for a member run, one line of each member's accuracy and the vote's.

    ``before`` runs first (it clears the progress bar, so the lines stand on their own).
    """
    from nn3 import facade
    if style == "network2":  # network2's runs show the evaluation accuracy, as the book's chapter-3 scripts do
        monitor = (*monitor, "validation_accuracy")

    def report(record, loop):
        if before:
            before()
        if "members" in record:
            _say(facade.members_line(record))
            return
        for line in facade.epoch_lines(record, style, monitor):
            _say(line)
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
    from nn3 import runs, train
    for i, lp in enumerate(getattr(loop, "loops", ())):  # a member run: each member's best, then the vote's
        if runs.best_of(lp):
            _say(f"member {i}: {_best_phrase(runs.best_of(lp))}")
    best = train.best_record(loop)
    if best:
        _say(f"Best validation accuracy {best.get('validation_accuracy', 0):.2%} at epoch {best['epoch']}"
             f" (test {best.get('test_accuracy', float('nan')):.2%}); {time.time() - started:.1f} s")
    _say(f"run directory: {run_dir}")
    if getattr(loop, "diverged", None):
        print(f"nn3: member(s) {', '.join(map(str, loop.diverged))} diverged", file=sys.stderr)
    msg = runs.stop_message(loop, run_dir)
    if msg:
        print(f"nn3: {msg}", file=sys.stderr)
    if loop.stop_reason == "interrupted":
        from nn3 import stop
        return stop.exit_code(stop.requested() or signal.SIGINT)
    return {"nan": EXIT_DIVERGED}.get(loop.stop_reason, 0)


def _best_phrase(best) -> str:
    """A best epoch (runs.best_of) in words, as the end of a run and replay say it."""
    def pct(key):
        return "none" if best[key] is None else f"{best[key]:.2%}"
    return (f"best validation accuracy {pct('validation_accuracy')} at epoch {best['epoch']} "
            f"(test {pct('test_accuracy')})")


def _members(a) -> list | None:
    """The seeds of --seeds, or of --members N (0..N-1), times the --sweep values; None: a lone run."""
    from nn3 import runs
    seeds = a.seeds or (list(range(a.members)) if a.members else None)
    if not a.sweep:
        return seeds
    if seeds is None:
        seeds = [a.seed if a.seed is not None else 0]
    return runs.sweep_members(seeds, dict(a.sweep))


def _settings_given(a) -> dict:
    """The training settings given as flags (see _training_flags); None where unset."""
    from nn3 import runs
    return {k: getattr(a, k) for k in runs.SETTINGS}


def _start(config, run_dir, quiet, params=None):
    """Train ``config`` in a new ``run_dir`` (from ``params`` if given): train's and import's end."""
    from nn3 import runs
    runs.limit_threads(config)
    from nn3 import backend
    _say(backend.describe())  # after limit_threads: JAX starts here
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
    if not (a.config or a.preset):
        raise UsageError("nn3 train: give a preset name or --config FILE")
    config = runs.train_config(a.preset, recorded=runs.read_recorded(a.config) if a.config else None,
                               dataset=a.dataset, data_path=a.data, limit=a.limit, monitor=a.monitor,
                               members=_members(a), **_settings_given(a))
    return _start(config, a.run or runs.default_run_dir(config["preset"]), a.quiet)


def cmd_resume(a):
    from nn3 import runs
    tick, close = _progress(a.quiet)
    started = time.time()
    from nn3.rundir import RunDir
    recorded = RunDir.read_config(a.run)
    style = recorded.get("style", "network3")
    runs.limit_threads(recorded)
    try:
        run, _, loop = runs.resume(a.run, epochs=a.epochs, on_progress=tick,
                                   report=_reporter(style, close, recorded.get("monitor", ())))
    finally:
        close()
    run.close()
    return _finish(loop, a.run, started)


def cmd_replay(a):
    from nn3 import runs
    res = runs.replay(a.run, step=a.step, best=a.best, data_name=a.data, predict=a.predict or 0, member=a.member)
    for m in res.get("members", ()):
        _say(f"member {m['member']} (seed {m['seed']}): {a.data} accuracy {m['accuracy']:.2%} "
             f"({m['correct']} / {m['n']})" + _verdict(m, "; recorded at save time")
             + (f"; {_best_phrase(m['best'])}" if m["best"] else ""))
    who = " of the vote" if "members" in res else ("" if a.member is None else f" of member {a.member}")
    _say(f"step {res['step']} ({res['position']}): {a.data} accuracy{who} {res['accuracy']:.2%} "
         f"({res['correct']} / {res['n']})")
    if res["recorded"] is not None:
        _say(_verdict(res, "recorded at save time"))
    elif res["batch"] and a.data in ("test", "validation"):
        _say("no accuracy was recorded for this step: it was saved mid-epoch (an interruption), "
             "and accuracies are measured when an epoch ends")
    if res["best"] and ("members" in res or a.member is not None):  # a member run's bests, as of this step
        _say(f"{'the vote' if a.member is None else f'member {a.member}'}: {_best_phrase(res['best'])}")
    if a.predict:  # the images the accuracy above was measured on: the run's data set, path and limit
        _say("predicted: " + " ".join(str(v) for v in res["predicted"]))
        _say("labels:    " + " ".join(str(v) for v in res["labels"]))
    every = [res, *res.get("members", ())]
    return 0 if all(r["recorded"] is None or r["equal"] for r in every) else EXIT_FAULT


def _verdict(res, lead) -> str:
    if res["recorded"] is None:
        return ""
    return f"{lead}: {res['recorded']:.2%} -- {'equal' if res['equal'] else 'DIFFERENT'}"


def cmd_export(a):
    from nn3 import runs
    res = runs.export_json(a.run, a.out, step=a.step, best=a.best, force=a.force, member=a.member)
    what = "" if res["members"] is None else f": an ensemble bundle of {res['members']} members"
    _say(f"wrote {a.out}{what} (step {res['step']}, {res['position']})")
    return 0


def _flag(setting: str) -> str:
    return "--mini-batch" if setting == "mini_batch_size" else "--" + setting.replace("_", "-")


def cmd_import(a):
    from nn3 import runs
    config, params, why = runs.import_config(a.json, dataset=a.dataset, data_path=a.data, limit=a.limit,
                                             monitor=a.monitor, members=_members(a), **_settings_given(a))
    given = ", ".join(_flag(k) for k, v in _settings_given(a).items() if v is not None)
    _say(f"importing {a.json}: {why}" + (f", with {given} as given" if given else ""))
    _say(f"settings: {runs.describe_settings(config)}")
    return _start(config, a.run, a.quiet, params=params)


def cmd_evaluate(a):
    from nn3 import runs
    res = runs.evaluate_json(a.json, data_name=a.data, dataset=a.dataset)
    for m in res.get("members", ()):
        _say(f"member {m['member']} (seed {m['seed']}): {res['name']} accuracy {m['accuracy']:.2%} "
             f"({m['correct']} / {m['n']})")
    who = " of the vote" if "members" in res else ""
    _say(f"{a.json}: {res['name']} accuracy{who} {res['accuracy']:.2%} ({res['correct']} / {res['n']})")
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
    from nn3 import plots
    out = Path(a.out or a.run)
    made = plots.of_run(a.run, out)
    which = made["which"]
    _say(f"wrote in {out}: " + ", ".join(
        ["curves.png" if made["measured"] else "curves.png (no training accuracy: --monitor training_accuracy "
         "measures it)", f"misclassified.png ({made['wrong']} wrong, {which})"]
        + (["filters.png"] if made["filters"] else [])))
    return 0


def cmd_serve(a):
    from nn3 import serve
    if not 0 <= a.port <= 65535:
        raise ValueError(f"--port: {a.port} is not a port number (0-65535; 0 picks a free one)")
    serve.serve(a.runs or ["checkpoints"], host=a.host, port=a.port, say=_say)
    return 0


def cmd_book(a):
    from nn3 import book
    return book.command(a.dir, rows=a.rows, beyond=a.beyond, seeds=a.seeds, quick=a.quick, data_path=a.data,
                        report_only=a.report_only, say=_say, warn=lambda line: print(f"nn3: {line}", file=sys.stderr))


def cmd_presets(a):
    from nn3 import presets
    for line in presets.table():
        _say(line)
    return 0


COMMANDS = {"data": cmd_data, "train": cmd_train, "resume": cmd_resume, "replay": cmd_replay,
            "export": cmd_export, "import": cmd_import, "evaluate": cmd_evaluate, "plot": cmd_plot,
            "presets": cmd_presets, "serve": cmd_serve,
            "book": cmd_book}  # what main runs for each of _parser's commands


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


EXTRAS = {"matplotlib": "plot", "werkzeug": "web", "jax_cuda12_plugin": "cuda", "jax_cuda13_plugin": "cuda"}
# the optional packages, and which of nn3's extras (pyproject.toml) installs each


def _missing_extra(e: BaseException) -> str | None:
    """The line for an optional package that is not installed (the user's setup, not a bug), else None."""
    extra = EXTRAS.get((getattr(e, "name", None) or "").partition(".")[0])
    if not isinstance(e, ModuleNotFoundError) or extra is None:
        return None
    return f'{_first_line(e)}: python -m pip install -e ".[{extra}]" -c constraints.txt, in nn3\'s folder'


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


def _quiet_orbax():
    """orbax logs every save through absl at INFO and WARNING; a command's output is its own.

    Set here, for the command, not in the library: a program that imports nn3 keeps the
    logging it chose.
    """
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.ERROR)


def _escape(error):
    """An encoding error handler that cannot fail: the bytes of a POSIX path that did not
    decode go out as they came (surrogateescape), any other character the encoding lacks
    as ``\\u5c71`` (backslashreplace)."""
    try:
        return codecs.lookup_error("surrogateescape")(error)
    except UnicodeError:
        return codecs.lookup_error("backslashreplace")(error)


codecs.register_error("nn3.escape", _escape)


@contextlib.contextmanager
def _printable_output():
    """stdout and stderr that escape what they cannot encode instead of failing on it.

    To a pipe or a file Python writes in the locale's encoding (on Windows the ANSI code
    page: cp1252, or cp932 in Japan), and a run directory's path or a preset's text may
    hold characters it lacks: printing ``run directory: C:\\runs\\山田`` ended a command
    whose work was done in an error. Python's stderr already escapes them
    (``backslashreplace``); stdout, ``strict`` on POSIX and ``surrogateescape`` on Windows
    (neither helps there), now does the same, for the command only (a program that calls
    ``main`` gets its streams back as they were). A console shows every character.
    """
    changed = [(s, s.errors) for s in (sys.stdout, sys.stderr)
               if getattr(s, "errors", None) in ("strict", "surrogateescape") and hasattr(s, "reconfigure")]
    for s, _ in changed:
        s.reconfigure(errors="nn3.escape")
    try:
        yield
    finally:
        for s, errors in changed:
            s.reconfigure(errors=errors)


def main(argv=None) -> int:
    from nn3 import stop, threads  # no JAX: the handlers are in place before anything heavy is imported
    stop.clear()
    _quiet_orbax()
    with _printable_output():
        try:
            with stop.handlers(raising=True), _one_line_warnings():
                a = _parser().parse_args(argv)
                if a.command not in ("presets",):
                    threads.check_platforms()
                    _compile_cache()
                return COMMANDS[a.command](a)
        except KeyboardInterrupt:  # before training began (importing, loading data, compiling): nothing to save
            signum = stop.requested() or signal.SIGINT
            print(f"nn3: interrupted ({stop.name(signum)}) before training began; nothing was written",
                  file=sys.stderr)
            return stop.exit_code(signum)
        except UsageError as e:
            print(f"{e}", file=sys.stderr)
            return EXIT_USAGE
        except (ValueError, OSError) as e:  # DataError, ExportError, RunDirError, MetricsError are ValueErrors
            print(f"nn3: error: {_first_line(e)}", file=sys.stderr)
            return EXIT_FAULT
        except Exception as e:  # a bug: still one line, unless NN3_DEBUG asks for the traceback
            missing = _missing_extra(e)
            if missing:
                print(f"nn3: error: {missing}", file=sys.stderr)
                return EXIT_FAULT
            if os.environ.get("NN3_DEBUG"):
                raise
            print(f"nn3: internal error (a bug; NN3_DEBUG=1 shows the traceback): {type(e).__name__}: "
                  f"{_first_line(e)}", file=sys.stderr)
            return EXIT_FAULT


if __name__ == "__main__":
    sys.exit(main())
