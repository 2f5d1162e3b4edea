"""The commands of ``nn3``: each a small ``_add_<command>`` that declares its flags, beside the
``cmd_<command>`` that makes one library call with them and prints what it got.

    >>> from nn3.cli import commands
    >>> [add.__name__ for add in commands.ADDERS][:3]
    ['_add_data', '_add_train', '_add_resume']
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from nn3.cli.flags import (
    EXIT_FAULT,
    UsageError,
    checkpoint_choice,
    data_choice,
    flag_name,
    process_flags,
    seeds,
    training_flags,
)
from nn3.cli.flags import positive_int as count
from nn3.cli.report import best_phrase, finish, progress_bar, reporter, say, verdict

__all__ = ["ADDERS"]


# ---------------------------------------------------------------- data

def _add_data(sub: Any) -> None:
    d = sub.add_parser("data", help="find, verify and describe the data",
                       description="Find, verify and describe the data (or fetch it, or write the expanded set).")
    d.add_argument("--path", help="a data file or directory (default: $NN3_DATA_DIR, then ./data)")
    d.add_argument("--dataset", default="mnist", choices=["mnist", "fashion"], help="the data set (default: mnist)")
    d.add_argument("--fetch", action="store_true", help="download into ./data if missing (default: off)")
    d.add_argument("--expand", metavar="OUT", help="write the book's mnist_expanded.pkl.gz to OUT (default: off)")
    d.set_defaults(run_cmd=cmd_data)


def cmd_data(a: argparse.Namespace) -> int:
    from nn3.store import data
    if a.expand:
        data.write_expanded(a.expand, a.path)
        say(f"wrote {a.expand}")
        return 0
    for line in data.describe(a.path, dataset=a.dataset, fetch=a.fetch):
        say(line)
    from nn3.engine import backend
    say(backend.describe())
    return 0


# ---------------------------------------------------------------- train, resume, import

def _add_train(sub: Any) -> None:
    t = sub.add_parser("train", help="train a preset (see: nn3 presets)",
                       description="Train a preset, or a recorded config again, in a run directory.")
    t.add_argument("preset", nargs="?", help="a preset name (see: nn3 presets); or give --config")
    t.add_argument("--config", metavar="FILE",
                   help="a run's config.json, or its run directory, to train again (default: none)")
    t.add_argument("--run", metavar="DIR", help="the run directory (default: checkpoints/PRESET-TIME)")
    training_flags(t, "the preset's, or the config's", ", or the config's")
    process_flags(t)
    t.set_defaults(run_cmd=cmd_train)


def cmd_train(a: argparse.Namespace) -> int:
    from nn3.runs import config as run_config
    if not (a.config or a.preset):
        raise UsageError("nn3 train: give a preset name or --config FILE")
    setup = _setup(a)
    config = run_config.train_config(a.preset, recorded=run_config.read_recorded(a.config) if a.config else None,
                                     dataset=a.dataset, data_path=a.data, limit=a.limit, monitor=a.monitor,
                                     members=_members(a), **_settings_given(a))
    return _start(config, a.run or run_config.default_run_dir(config["preset"]), a.quiet, setup=setup)


def _add_resume(sub: Any) -> None:
    r = sub.add_parser("resume", help="carry on a run where it stopped",
                       description="Carry on a run where it stopped (bit for bit the run that never stopped).")
    r.add_argument("run", help="the run directory")
    r.add_argument("--epochs", type=count, help="train to this many epochs in all (default: the run's)")
    r.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on a terminal)")
    process_flags(r)
    r.set_defaults(run_cmd=cmd_resume)


def cmd_resume(a: argparse.Namespace) -> int:
    from nn3.runs import cluster, session
    from nn3.store.rundir import RunDir
    setup = _setup(a)
    # Only process 0 of a run of several reads the run's directory; the others start JAX
    # for a member run and take process 0's config.
    primary = setup is None or setup.process_id in (0, None)
    recorded = RunDir.read_config(a.run) if primary else {"members": []}
    session.limit_threads(recorded, setup)
    recorded = cluster.agree(recorded)
    tick, close = progress_bar(a.quiet)
    started = time.time()
    watch = session.Watch(on_progress=tick,
                          on_epoch=reporter(recorded.get("style", "network3"), close, recorded.get("monitor", ())))
    try:
        run, _, state = session.resume(a.run, epochs=a.epochs, watch=watch)
    finally:
        close()
    if run is not None:
        run.close()
    return finish(state, a.run, started, members="members" in recorded)


def _add_import(sub: Any) -> None:
    i = sub.add_parser("import", help="start a run from a JSON network (then train it)",
                       description="Start a run from a JSON network and train it. Unset flags come from "
                                   "the preset whose network it is, else from the book's plain settings "
                                   "for its kind of network (a network3 JSON keeps its mini-batch size); the "
                                   "settings are printed before training.")
    i.add_argument("json", help="a network2 or nn3 JSON file")
    i.add_argument("--run", required=True, metavar="DIR", help="the run directory to create (required)")
    training_flags(i, "the matching preset's, else plain settings")
    process_flags(i)
    i.set_defaults(run_cmd=cmd_import)


def cmd_import(a: argparse.Namespace) -> int:
    from nn3.runs import config as run_config
    config, params, why = run_config.import_config(a.json, dataset=a.dataset, data_path=a.data, limit=a.limit,
                                                   monitor=a.monitor, members=_members(a), **_settings_given(a))
    given = ", ".join(flag_name(k) for k, v in _settings_given(a).items() if v is not None)
    say(f"importing {a.json}: {why}" + (f", with {given} as given" if given else ""))
    say(f"settings: {run_config.describe_settings(config)}")
    return _start(config, a.run, a.quiet, params=params, setup=_setup(a))


def _members(a) -> list | None:
    """The seeds of --seeds, or of --members N (0..N-1), times the --sweep values; None: a lone run."""
    from nn3.runs import config as run_config
    chosen = a.seeds or (list(range(a.members)) if a.members else None)
    if not a.sweep:
        return chosen
    return run_config.sweep_members(chosen or [a.seed if a.seed is not None else 0], dict(a.sweep))


def _settings_given(a) -> dict:
    """The training settings given as flags; None where unset."""
    from nn3.runs import config as run_config
    return {k: getattr(a, k) for k in run_config.SETTINGS}


def _setup(a):
    """The processes this command's run spans (``runs.cluster.Setup``), or None for one."""
    from nn3.runs import cluster
    return cluster.Setup.from_flags(a.coordinator, a.num_processes, a.process_id)


def _start(config: dict, run_dir, quiet: bool, params=None, setup=None) -> int:
    """Train ``config`` in a new ``run_dir`` (from ``params`` if given): train's and import's end."""
    from nn3.runs import cluster, session
    if setup is not None and "members" not in config:
        raise cluster.ClusterError("a run of one network cannot use more than one process "
                                   "(give --members, --seeds or --sweep)")
    session.limit_threads(config, setup)
    from nn3.engine import backend
    say(backend.describe())  # after limit_threads: JAX starts here
    tick, close = progress_bar(quiet)
    started = time.time()
    watch = session.Watch(on_progress=tick, on_epoch=reporter(config["style"], close, config["monitor"]))
    run_dir = cluster.agree(str(run_dir))  # process 0's
    try:
        run, _, state = session.start(config, run_dir, params=params, watch=watch)
    finally:
        close()
    if run is not None:
        run.close()
    return finish(state, run_dir, started, members="members" in config)


# ---------------------------------------------------------------- replay, export, evaluate, plot

def _add_replay(sub: Any) -> None:
    q = sub.add_parser("replay", help="rebuild a run's network and evaluate it",
                       description="Rebuild a run's network and evaluate it.")
    q.add_argument("run", help="the run directory")
    checkpoint_choice(q, "each member and the vote")
    data_choice(q)
    q.add_argument("--predict", type=count, metavar="N",
                   help="also print the predicted digits of the first N images of that data (default: none)")
    q.set_defaults(run_cmd=cmd_replay)


def cmd_replay(a: argparse.Namespace) -> int:
    from nn3.runs import inspect
    res = inspect.replay(a.run, step=a.step, best=a.best, data_name=a.data, predict=a.predict or 0, member=a.member)
    for m in res.get("members", ()):
        say(f"member {m['member']} (seed {m['seed']}): {a.data} accuracy {m['accuracy']:.2%} "
            f"({m['correct']} / {m['n']})" + verdict(m, "; recorded at save time")
            + (f"; {best_phrase(m['best'])}" if m["best"] else ""))
    who = " of the vote" if "members" in res else ("" if a.member is None else f" of member {a.member}")
    say(f"step {res['step']} ({res['position']}): {a.data} accuracy{who} {res['accuracy']:.2%} "
        f"({res['correct']} / {res['n']})")
    if res["recorded"] is not None:
        say(verdict(res, "recorded at save time"))
    elif res["batch"] and a.data in ("test", "validation"):
        say("no accuracy was recorded for this step: it was saved mid-epoch (an interruption), "
            "and accuracies are measured when an epoch ends")
    if res["best"] and ("members" in res or a.member is not None):  # a member run's bests, as of this step
        say(f"{'the vote' if a.member is None else f'member {a.member}'}: {best_phrase(res['best'])}")
    if a.predict:  # the images the accuracy above was measured on: the run's data set, path and limit
        say("predicted: " + " ".join(str(v) for v in res["predicted"]))
        say("labels:    " + " ".join(str(v) for v in res["labels"]))
    every = [res, *res.get("members", ())]
    return 0 if all(r["recorded"] is None or r["equal"] for r in every) else EXIT_FAULT


def _add_export(sub: Any) -> None:
    q = sub.add_parser("export", help="write a run's network (a member run's: its ensemble) as JSON",
                       description="Write a run's network (a member run's: its ensemble) as JSON.")
    q.add_argument("run", help="the run directory")
    q.add_argument("out", help="the JSON file to write")
    q.add_argument("--force", action="store_true", help="replace OUT if it exists (default: refuse)")
    checkpoint_choice(q, "every member, as one ensemble bundle that nn3 evaluate and nn3.load read")
    q.set_defaults(run_cmd=cmd_export)


def cmd_export(a: argparse.Namespace) -> int:
    from nn3.runs import inspect
    res = inspect.export_json(a.run, a.out, step=a.step, best=a.best, force=a.force, member=a.member)
    what = "" if res["members"] is None else f": an ensemble bundle of {res['members']} members"
    say(f"wrote {a.out}{what} (step {res['step']}, {res['position']})")
    return 0


def _add_evaluate(sub: Any) -> None:
    e = sub.add_parser("evaluate", help="accuracy of a JSON network or ensemble bundle on the test or "
                                        "validation data",
                       description="The accuracy of a JSON network on a data set; of an ensemble bundle "
                                   "(nn3 export of a member run), each member's and the vote's.")
    e.add_argument("json", help="a network2 or nn3 JSON file, or an ensemble bundle")
    data_choice(e)
    e.add_argument("--dataset", default="mnist", choices=["mnist", "fashion"],
                   help="the data set of test | validation (default: mnist)")
    e.set_defaults(run_cmd=cmd_evaluate)


def cmd_evaluate(a: argparse.Namespace) -> int:
    from nn3.runs import inspect
    res = inspect.evaluate_json(a.json, data_name=a.data, dataset=a.dataset)
    for m in res.get("members", ()):
        say(f"member {m['member']} (seed {m['seed']}): {res['name']} accuracy {m['accuracy']:.2%} "
            f"({m['correct']} / {m['n']})")
    who = " of the vote" if "members" in res else ""
    say(f"{a.json}: {res['name']} accuracy{who} {res['accuracy']:.2%} ({res['correct']} / {res['n']})")
    return 0


def _add_plot(sub: Any) -> None:
    p = sub.add_parser("plot", help="PNGs of a run: learning curves, misclassified digits, filters",
                       description="PNGs of a run: learning curves, the newest checkpoint's misclassified "
                                   "test digits, and its first-layer filters (conv nets).")
    p.add_argument("run", help="the run directory")
    p.add_argument("--out", metavar="DIR", help="folder for the PNGs (default: the run directory)")
    p.set_defaults(run_cmd=cmd_plot)


def cmd_plot(a: argparse.Namespace) -> int:
    from nn3.book import plots
    out = Path(a.out or a.run)
    made = plots.of_run(a.run, out)
    which = made["which"]
    say(f"wrote in {out}: " + ", ".join(
        ["curves.png" if made["measured"] else "curves.png (no training accuracy: --monitor training_accuracy "
         "measures it)", f"misclassified.png ({made['wrong']} wrong, {which})"]
        + (["filters.png"] if made["filters"] else [])))
    return 0


# ---------------------------------------------------------------- book, presets, serve

def _add_book(sub: Any) -> None:
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
    b.add_argument("--seeds", type=seeds, metavar="S,S,...",
                   help="one run per seed; the report quotes the best, as the book's best of three (default: 0)")
    b.add_argument("--quick", action="store_true",
                   help="every row for one epoch on the first 100 examples of each split (default: off)")
    b.add_argument("--data", metavar="PATH", help="a data file or directory (default: $NN3_DATA_DIR, then ./data)")
    b.add_argument("--report-only", action="store_true",
                   help="write REPORT.md and figures/ from the runs there; train nothing (default: off)")
    process_flags(b)
    b.set_defaults(run_cmd=cmd_book)


def cmd_book(a: argparse.Namespace) -> int:
    from nn3.book import command
    return command.command(a.dir, rows=a.rows, beyond=a.beyond, seeds=a.seeds, quick=a.quick, data_path=a.data,
                           report_only=a.report_only, say=say, warn=lambda line: print(f"nn3: {line}", file=sys.stderr),
                           setup=_setup(a))


def _add_presets(sub: Any) -> None:
    p = sub.add_parser("presets", help="list the book's experiments and their settings",
                       description="The book's experiments: epochs, eta, lmbda, data, and the book's result.")
    p.set_defaults(run_cmd=cmd_presets)


def cmd_presets(a: argparse.Namespace) -> int:
    from nn3.runs import presets
    for line in presets.table():
        say(line)
    return 0


def _add_serve(sub: Any) -> None:
    sv = sub.add_parser("serve", help="a local page per run: curves, errors, filters, a digit to draw")
    sv.add_argument("runs", nargs="*", metavar="RUN",
                    help="run directories or directories of runs (default: checkpoints)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="interface to listen on (default: 127.0.0.1, this machine only)")
    sv.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    sv.set_defaults(run_cmd=cmd_serve)


def cmd_serve(a: argparse.Namespace) -> int:
    from nn3 import serve
    if not 0 <= a.port <= 65535:
        raise ValueError(f"--port: {a.port} is not a port number (0-65535; 0 picks a free one)")
    serve.serve(a.runs or ["checkpoints"], host=a.host, port=a.port, say=say)
    return 0


# In the order ``nn3 --help`` lists them.
ADDERS = (_add_data, _add_train, _add_resume, _add_replay, _add_export, _add_import, _add_evaluate, _add_plot,
          _add_book, _add_presets, _add_serve)


