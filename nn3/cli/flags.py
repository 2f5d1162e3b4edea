"""What the user types, checked: the argument parser's one-line errors, flag types and shared flag groups.

    >>> from nn3.cli import flags
    >>> flags.seeds("0,1,2"), flags.sweep("lmbda=0.1,1")
    ([0, 1, 2], ('lmbda', [0.1, 1.0]))

Every flag is checked while the command line is parsed, before any data is looked for:
a bad value costs the user nothing but one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import math
from typing import NoReturn

__all__ = ["EXIT_DIVERGED", "EXIT_FAULT", "EXIT_INTERRUPTED", "EXIT_PEER_FAILED", "EXIT_USAGE", "MONITORS", "Parser",
           "UsageError", "checkpoint_choice", "data_choice", "flag_name", "number", "positive_int", "process_flags",
           "seeds", "sweep", "training_flags"]

EXIT_USAGE, EXIT_FAULT, EXIT_DIVERGED, EXIT_PEER_FAILED, EXIT_INTERRUPTED = 2, 1, 3, 4, 130
MONITORS = ("training_accuracy", "training_cost", "validation_cost")


class UsageError(Exception):
    """A command line that cannot be run; the message is the one line to print."""


class Parser(argparse.ArgumentParser):
    """argparse's parser with its errors as one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return v


def seeds(text: str) -> list[int]:
    try:
        out = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if any(s < 0 for s in out):
        raise argparse.ArgumentTypeError(f"seeds must be integers >= 0, got {text}")
    return out


def sweep(text: str) -> tuple[str, list[float]]:
    name, eq, values = text.partition("=")
    if not eq or not values:
        raise argparse.ArgumentTypeError(f"give NAME=V,V,..., got {text!r}")
    return name.strip(), [number(v) for v in values.split(",")]


def training_flags(p: argparse.ArgumentParser, source: str, recorded: str = "") -> None:
    """The flags that set how a network trains: ``train`` and ``import`` share them.

    ``source`` says where an unset setting comes from (a preset, the imported net);
    ``recorded`` is added to the data flags' defaults (", or the config's").
    """
    d = f"default: {source}"
    m = p.add_mutually_exclusive_group()
    m.add_argument("--members", type=positive_int, metavar="N",
                   help="train N networks (seeds 0..N-1) as one run that votes (default: one network)")
    m.add_argument("--seeds", type=seeds, metavar="S,S,...",
                   help="train one network per seed as one run that votes (default: one network)")
    p.add_argument("--sweep", type=sweep, action="append", metavar="NAME=V,V",
                   help="one member per value (times each seed) of eta, lmbda, momentum or l1, all in one "
                        "program; repeat for every combination (default: none)")
    p.add_argument("--epochs", type=positive_int, help=f"epochs to train ({d})")
    p.add_argument("--eta", type=number, help=f"learning rate ({d})")
    p.add_argument("--lmbda", type=number, help=f"L2 regularisation strength ({d})")
    p.add_argument("--momentum", type=number, help=f"momentum coefficient, 0 for plain SGD ({d})")
    p.add_argument("--optimizer", metavar="NAME", help="sgd (the book's rule) or one of optax's: adam, rmsprop, "
                   f"..., with --eta as its learning rate (default: {source}, else sgd)")
    p.add_argument("--mini-batch", dest="mini_batch_size", type=positive_int, metavar="N",
                   help=f"mini-batch size ({d})")
    p.add_argument("--seed", type=int, help=f"seed of every random draw ({d})")
    p.add_argument("--augment", choices=["none", "expand", "affine"],
                   help=f"training data made on the fly: the book's expansion or random affine maps ({d})")
    p.add_argument("--schedule", choices=["constant", "plateau"],
                   help=f"eta: constant, or halved after 10 epochs without a new best ({d})")
    p.add_argument("--early-stopping", type=positive_int, metavar="N",
                   help=f"stop after N epochs without a new best ({d})")
    p.add_argument("--monitor", action="append", choices=MONITORS,
                   help="also measure this each epoch (network2's monitors); repeat for more "
                        "(default: none)")
    p.add_argument("--chunks", type=positive_int, metavar="N",
                   help="compiled calls per epoch, the progress bar's steps (default: automatic)")
    p.add_argument("--dataset", choices=["mnist", "fashion"], help=f"the data set (default: mnist{recorded})")
    p.add_argument("--data", metavar="PATH",
                   help=f"a data file or directory (default: $NN3_DATA_DIR, then ./data{recorded})")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help=f"use only the first N examples of each split (default: all{recorded})")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on a terminal)")


def process_flags(p: argparse.ArgumentParser) -> None:
    """``--coordinator``, ``--num-processes``, ``--process-id``: one run over several
    processes or hosts (nn3.runs.cluster); the same from NN3_COORDINATOR & co."""
    g = p.add_argument_group("several processes or hosts (a member run, a sweep, the book's vote)")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="process 0's address, where JAX's coordinator listens (default: $NN3_COORDINATOR, "
                        "a scheduler's, or none: one process)")
    g.add_argument("--num-processes", type=positive_int, metavar="P",
                   help="how many processes the run has (default: $NN3_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, metavar="I",
                   help="this process's index, 0 to P-1; process 0 writes the run (default: $NN3_PROCESS_ID)")


def data_choice(p: argparse.ArgumentParser) -> None:
    """``--data`` of the commands that evaluate a network (replay, evaluate): they agree."""
    p.add_argument("--data", default="test", metavar="WHICH",
                   help="test | validation | a data file or directory, whose test split is used "
                        "(default: test)")


def checkpoint_choice(p: argparse.ArgumentParser, member_default: str) -> None:
    """``--member``, and ``--step`` or ``--best``: which network of a run (replay, export)."""
    p.add_argument("--member", type=int, metavar="K",
                   help=f"of a member run, member K alone (counted from 0) (default: {member_default})")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--step", type=int, help="the checkpoint at this step (default: the newest)")
    g.add_argument("--best", action="store_true",
                   help="the checkpoint of the best validation accuracy (default: the newest)")


def flag_name(setting: str) -> str:
    """The flag that sets ``setting``: ``mini_batch_size`` -> ``--mini-batch``."""
    return "--mini-batch" if setting == "mini_batch_size" else "--" + setting.replace("_", "-")
