"""The ``nn3`` command: train, resume, replay, export, import, evaluate, plot, data, presets, book, serve.

    $ nn3 train ch1                        # the book's chapter-1 network, 30 epochs
    $ nn3 resume checkpoints/ch1-...       # carry on where it stopped
    $ nn3 replay checkpoints/ch1-... --best

Kept thin on purpose: each command parses its flags and makes one library call
(nn3.runs, nn3.store, nn3.book), then prints what it got (``commands``; the flags in
``flags``, the lines in ``report``). Every fault the user can cause ends in one line on
stderr and a non-zero exit: 2 for a command line that cannot run, 1 for a fault in what
it names, 3 for a run that diverged, 128 + the signal for one stopped by a signal.
"""
from __future__ import annotations

import codecs
import contextlib
import os
import signal
import sys
import warnings
from pathlib import Path

from nn3.cli.commands import ADDERS
from nn3.cli.flags import EXIT_DIVERGED, EXIT_FAULT, EXIT_INTERRUPTED, EXIT_USAGE, Parser, UsageError

__all__ = ["EXIT_DIVERGED", "EXIT_FAULT", "EXIT_INTERRUPTED", "EXIT_USAGE", "commands", "flags", "main", "parser",
           "report"]


def _version() -> str:
    import importlib.metadata

    from nn3 import __version__

    def v(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"
    return f"nn3 {__version__} (jax {v('jax')}, flax {v('flax')}, orbax-checkpoint {v('orbax-checkpoint')})"


def parser() -> Parser:
    """The command line's parser: one subcommand per ``commands.ADDERS``."""
    p = Parser(prog="nn3", description="The networks of Neural Networks and Deep Learning, on JAX.")
    p.add_argument("--version", action="version", version=_version(), help="print the versions and exit")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for add in ADDERS:
        add(sub)
    return p


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


EXTRAS = {"matplotlib": "plot", "werkzeug": "web", "jax_cuda12_plugin": "cuda", "jax_cuda13_plugin": "cuda"}
"""The optional packages, and which of nn3's extras (pyproject.toml) installs each."""


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
    here = str(Path(__file__).resolve().parent.parent)

    def show(message, category, filename, lineno, file=None, line=None):
        if category is UserWarning and str(Path(filename).resolve()).startswith(here):
            print(f"nn3: warning: {_first_line(Warning(str(message)))}", file=sys.stderr, flush=True)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _compile_cache() -> None:
    """With ``$NN3_CACHE_DIR`` set, keep XLA's compiled programs there between commands:
    a replay or a resume then skips the compiles its run already did. Off by default
    (bench/README.md, "compile cache"). The same program gives the same numbers,
    compiled now or read back."""
    where = os.environ.get("NN3_CACHE_DIR", "")
    if not where:
        return
    import jax
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _quiet_orbax() -> None:
    """orbax logs every save through absl at INFO and WARNING; a command's output is its own.

    Set here, for the command, not in the library: a program that imports nn3 keeps the
    logging it chose.
    """
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.ERROR)


def _escape(error: UnicodeError) -> tuple[str | bytes, int]:
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
    hold characters it lacks: printing ``run directory: C:\\runs\\山田`` must not turn a
    command whose work was done into an error. Python's stderr already escapes them
    (``backslashreplace``); stdout, ``strict`` on POSIX and ``surrogateescape`` on Windows
    (neither helps there), does the same while the command runs (a program that calls
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


def main(argv: list[str] | None = None) -> int:
    """Run the ``nn3`` command with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    from nn3.engine import threads  # no JAX: the handlers are in place before anything heavy is imported
    from nn3.runs import stop
    stop.clear()
    _quiet_orbax()
    with _printable_output():
        try:
            with stop.handlers(raising=True), _one_line_warnings():
                a = parser().parse_args(argv)
                if a.command != "presets":
                    threads.check_platforms()
                    _compile_cache()
                return a.run_cmd(a)
        except KeyboardInterrupt:  # before training began (importing, loading data, compiling): nothing to save
            signum = stop.requested() or signal.SIGINT
            return _failed(f"interrupted ({stop.name(signum)}) before training began; nothing was written",
                           stop.exit_code(signum))
        except UsageError as e:
            print(f"{e}", file=sys.stderr)
            return EXIT_USAGE
        except (ValueError, OSError) as e:  # DataError, ExportError, RunDirError, MetricsError are ValueErrors
            return _failed(f"error: {_first_line(e)}", EXIT_FAULT)
        except Exception as e:  # a bug: still one line, unless NN3_DEBUG asks for the traceback
            missing = _missing_extra(e)
            if missing:
                return _failed(f"error: {missing}", EXIT_FAULT)
            if os.environ.get("NN3_DEBUG"):
                raise
            return _failed(f"internal error (a bug; NN3_DEBUG=1 shows the traceback): {type(e).__name__}: "
                           f"{_first_line(e)}", EXIT_FAULT)


def _failed(line: str, status: int) -> int:
    """Say ``line`` (``nn3: ...``) and return ``status``; in a run of several processes,
    end this one at once, leaving the line for the others (nn3.runs.cluster)."""
    from nn3.runs import watchdog
    if watchdog.attached():
        watchdog.fail(line, status, own=True)
    print(f"nn3: {line}", file=sys.stderr, flush=True)
    return status
