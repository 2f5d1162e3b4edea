"""A run on disk: config.json and orbax checkpoints, each step with a hash of its arrays.

    >>> import numpy as np, tempfile, os
    >>> from nn3.store.rundir import RunDir
    >>> run = RunDir.create(os.path.join(tempfile.mkdtemp(), "demo"), {"sizes": [2, 1]})
    >>> state = {"params": [np.zeros((2, 1), np.float32)], "key": np.zeros(2, np.uint32)}
    >>> run.save(0, state, {"epoch": 0, "validation_accuracy": 0.5})
    >>> step, restored, info = run.restore(state)
    >>> step, info["validation_accuracy"], run.steps()
    (0, 0.5, [0])
    >>> run.close()

A run directory holds ``config.json`` (written atomically) and one orbax step directory
per checkpoint, named by the global mini-batch step it was taken at (items ``state``, a
pytree of arrays, and ``info``, JSON). Each ``info`` carries a SHA-256 of its state,
checked on restore; a damaged newest (or best) step is skipped with a warning. Saves
are synchronous: orbax's async finalizer only logs a failed write and then goes on
pruning older steps, which would turn a full disk into lost checkpoints. Retention
keeps the newest ``keep_latest`` steps plus the best by validation accuracy. The
epochs' metrics live beside them in metrics.jsonl (nn3.store.metrics), not here.
"""
from __future__ import annotations

import atexit
import json
import math
import os
import pathlib
import shutil
import warnings
import weakref
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from nn3.store.files import atomic_write
from nn3.store.integrity import quiet_stray_reads, state_hash, structure_difference

__all__ = ["CONFIG", "FORMAT", "VERSION", "RunDir", "RunDirError"]

FORMAT, VERSION = "nn3-run", 1
CONFIG = "config.json"


class RunDirError(ValueError):
    """A run directory or checkpoint that cannot be used; the message names it."""


def _why(e: BaseException) -> str:
    msg = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {msg[:160]}" if msg else type(e).__name__


def _score(acc: Any) -> float | None:
    """A validation accuracy usable for ranking, or None (absent, NaN, not a number)."""
    try:
        acc = float(acc)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(acc) else acc


def _accuracy(metrics: Any) -> float:
    return float(metrics["validation_accuracy"])


class _Manager(ocp.CheckpointManager):
    """Orbax's manager, except that a step's unreadable orbax metrics file does not stop opening."""

    def _get_metrics(self, step: int) -> Any:
        try:
            return super()._get_metrics(step)
        except Exception:  # a damaged step: unranked, so BestN does not keep it as best
            return None


def _this_process_only() -> ocp.options.MultiprocessingOptions:
    """orbax's options for a directory that this process alone reads and writes."""
    if jax.process_count() == 1:
        return ocp.options.MultiprocessingOptions()
    return ocp.options.MultiprocessingOptions(primary_host=jax.process_index(), active_processes={jax.process_index()})


def _checked(path, keep_latest: int) -> pathlib.Path:
    path = pathlib.Path(path)
    if isinstance(keep_latest, bool) or not isinstance(keep_latest, int) or keep_latest < 1:
        raise RunDirError(f"{path}: keep_latest must be an int >= 1, got {keep_latest!r}")
    return path


_OPEN_RUNS: weakref.WeakSet[RunDir] = weakref.WeakSet()


@atexit.register
def _close_open_runs() -> None:
    for run in list(_OPEN_RUNS):
        run.close()


class RunDir:
    """A run directory; use :meth:`create` or :meth:`open`, not the constructor."""

    def __init__(self, path: pathlib.Path, config: dict, keep_latest: int, read_only: bool = False):
        self.path, self.config, self._keep, self.read_only = path, config, keep_latest, read_only
        self._mgr: _Manager | None = None
        self._open_manager()
        _OPEN_RUNS.add(self)

    @classmethod
    def create(cls, path: str | os.PathLike, config: dict, *, keep_latest: int = 3) -> RunDir:
        """Makes a new run at ``path`` (absent or an empty directory) holding ``config``."""
        path = _checked(path, keep_latest)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path}: exists and is not a directory")
        if path.is_dir() and any(path.iterdir()):
            raise RunDirError(f"{path}: directory is not empty; refusing to create a run there")
        if not isinstance(config, dict):
            raise RunDirError(f"{path}: config must be a dict, got {type(config).__name__}")
        config = {**config, "format": FORMAT, "version": VERSION}
        try:
            text = json.dumps(config, indent=2, sort_keys=True, allow_nan=False) + "\n"
        except (TypeError, ValueError) as e:
            raise RunDirError(f"{path}: config is not JSON-serialisable ({e})") from e
        path.mkdir(parents=True, exist_ok=True)
        atomic_write(path / CONFIG, text)
        return cls(path, config, keep_latest)

    def write_config(self, config: dict) -> None:
        """Replaces config.json (atomically) with ``config``: a resumed run's new length."""
        if self.read_only:
            raise RunDirError(f"{self.path}: opened read-only")
        config = {**config, "format": FORMAT, "version": VERSION}
        atomic_write(self.path / CONFIG, json.dumps(config, indent=2, sort_keys=True, allow_nan=False) + "\n")
        self.config = config

    @classmethod
    def open(cls, path: str | os.PathLike, *, keep_latest: int = 3, read_only: bool = False) -> RunDir:
        """Opens the existing run at ``path``.

        ``read_only`` (replay, export, plot) changes nothing in the directory: in
        particular it leaves temporary steps alone, which may be the save in flight of a
        run still training there.
        """
        path = _checked(path, keep_latest)
        return cls(path, cls.read_config(path), keep_latest, read_only)

    @staticmethod
    def read_config(path: str | os.PathLike) -> dict:
        """The config of the run at ``path``, checked as ``open`` checks it, without opening
        its checkpoints: a second manager on one directory cleans up temporary steps in the
        background, under the feet of the first one's save."""
        path = pathlib.Path(path)
        if not path.is_dir():
            raise RunDirError(f"{path}: no such run directory")
        cfg = path / CONFIG
        if not cfg.is_file():
            raise RunDirError(f"{path}: not an nn3 run directory (no {CONFIG})")
        try:
            config = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunDirError(f"{cfg}: corrupt ({_why(e)})") from e
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise RunDirError(f"{path}: not an nn3 run directory ({CONFIG} lacks format {FORMAT!r})")
        if config.get("version") != VERSION:
            raise RunDirError(f"{cfg}: unsupported run version {config.get('version')!r}")
        return config

    def _open_manager(self) -> None:
        policy = ocm.AnyPreservationPolicy([
            ocm.LatestN(n=self._keep),
            ocm.BestN(get_metric_fn=_accuracy, n=1, keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            best_fn=_accuracy, best_mode="max",  # makes orbax store the metrics BestN reads
            enable_async_checkpointing=False,
            cleanup_tmp_directories=not self.read_only,  # half-written steps of a killed process
            create=False,  # made by create(): orbax's own creation syncs every process of a run of several
            read_only=self.read_only,
            # This process's own directory, even in a run of several processes (only one writes).
            multiprocessing_options=_this_process_only(),
        )
        handlers = {"state": ocp.StandardCheckpointHandler(), "info": ocp.JsonCheckpointHandler()}
        try:
            self._mgr = _Manager(self.path.resolve(), options=options, item_handlers=handlers)
        except Exception as e:  # a corrupt metrics file of some step, an unreadable dir
            raise RunDirError(f"{self.path}: cannot read its checkpoints ({_why(e)})") from e

    def _manager(self) -> _Manager:
        if self._mgr is None:
            raise RunDirError(f"{self.path}: run is closed")
        return self._mgr

    def save(self, step: int, state: Any, info: dict) -> None:
        """Saves ``state`` (a pytree of arrays) and ``info`` (JSON) as checkpoint ``step``.

        ``step`` is the global mini-batch step the state was taken at (mini-batches
        trained since the run began, over every epoch), so that a mid-epoch checkpoint
        has its place between two epochs' ones. Saved steps >= ``step`` are
        discarded first: a resumed run rewinds to here.
        """
        mgr = self._manager()
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise RunDirError(f"{self.path}: step must be a non-negative int, got {step!r}")
        step = int(step)
        info = {**info, "state_sha256": state_hash(state)}
        try:
            json.dumps(info)  # NaN allowed: a diverged run's cost history is still worth keeping
        except (TypeError, ValueError) as e:
            raise RunDirError(f"{self.path}: info for step {step} is not JSON-serialisable ({e})") from e
        acc = _score(info.get("validation_accuracy"))
        metrics = None if acc is None else {"validation_accuracy": acc}
        try:
            for stale in [s for s in mgr.all_steps() if s >= step]:
                mgr.delete(stale)
            args = ocp.args.Composite(state=ocp.args.StandardSave(state), info=ocp.args.JsonSave(info))
            saved = mgr.save(step, args=args, metrics=metrics)
        except Exception as e:
            self._recover_after_failed_save(step)
            raise RunDirError(f"{self.path}: saving checkpoint step {step} failed ({_why(e)})") from e
        if not saved:
            raise RunDirError(f"{self.path}: orbax declined to save checkpoint step {step}")

    def _recover_after_failed_save(self, step: int) -> None:
        for tmp in self.path.glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(tmp, ignore_errors=True)
        try:
            if self._mgr is not None:
                self._mgr.close()
        except Exception:  # the manager may be in any state after a failed write
            pass
        self._mgr = None
        self._open_manager()

    def wait(self) -> None:
        """Blocks until no save is in flight (saves are synchronous; kept for the API)."""
        if self._mgr is not None:
            self._mgr.wait_until_finished()

    def close(self) -> None:
        """Waits for pending work and releases the checkpoint manager; idempotent."""
        if self._mgr is not None:
            mgr, self._mgr = self._mgr, None
            mgr.close()
        _OPEN_RUNS.discard(self)

    def steps(self) -> list[int]:
        """The global mini-batch steps of the saved checkpoints, ascending."""
        return sorted(self._manager().all_steps())

    def read_info(self, step: int) -> dict:
        """The ``info`` dict saved with ``step``."""
        if step not in self.steps():
            raise RunDirError(f"{self.path}: no checkpoint at step {step} (have {self.steps()})")
        try:
            info = self._manager().restore(step, args=ocp.args.Composite(info=ocp.args.JsonRestore()))["info"]
        except Exception as e:
            raise RunDirError(f"{self.path}: checkpoint step {step} info unreadable ({_why(e)})") from e
        if not isinstance(info, dict):
            raise RunDirError(f"{self.path}: checkpoint step {step} info is not a JSON object")
        return info

    def _ranked_by_accuracy(self) -> list[int]:
        scored = []
        for s in self.steps():
            try:
                acc = _score(self.read_info(s).get("validation_accuracy"))
            except RunDirError:
                continue
            if acc is not None:
                scored.append((acc, s))
        # Ties: the earlier step, as training's own best (a later equal epoch is no improvement).
        return [s for _, s in sorted(scored, key=lambda t: (-t[0], t[1]))]

    def best_step(self) -> int | None:
        """The step with the highest recorded validation_accuracy, or None."""
        ranked = self._ranked_by_accuracy()
        return ranked[0] if ranked else None

    def restore(self, target: Any, step: int | None = None, *, best: bool = False) -> tuple[int, Any, dict]:
        """Restores a state shaped like ``target`` onto the default device.

        Args:
          target: pytree of arrays or ``jax.ShapeDtypeStruct`` with the saved structure.
          step: the checkpoint (a global mini-batch step) to restore; None means the newest intact one.
          best: restore the intact step with the best validation_accuracy instead.

        Returns:
          ``(step, state, info)``; ``state`` has ``target``'s structure, jax arrays.
        """
        if best and step is not None:
            raise RunDirError(f"{self.path}: give either step={step} or best=True, not both")
        steps = self.steps()
        if step is not None:
            if step not in steps:
                raise RunDirError(f"{self.path}: no checkpoint at step {step} (have {steps})")
            candidates = [step]
        elif best:
            candidates = self._ranked_by_accuracy()
            if not candidates:
                raise RunDirError(f"{self.path}: no checkpoint records a validation_accuracy")
        else:
            candidates = steps[::-1]
            if not candidates:
                raise RunDirError(f"{self.path}: no checkpoints saved")
        damaged = []
        for n in candidates:
            try:
                state, info = self._restore_step(n, target)
            except _Damaged as e:
                if step is not None:
                    raise RunDirError(f"{self.path}: checkpoint step {n} is damaged ({e})") from e
                damaged.append((n, str(e)))
                continue
            for bad, why in damaged:
                warnings.warn(f"{self.path}: checkpoint step {bad} is damaged ({why}); using step {n}",
                              stacklevel=2)
            return n, state, info
        tried = ", ".join(str(n) for n, _ in damaged)
        raise RunDirError(f"{self.path}: no intact checkpoint (tried steps {tried}; {damaged[0][1]})")

    def _restore_step(self, n: int, target: Any) -> tuple[Any, dict]:
        mgr = self._manager()
        try:
            md = mgr.item_metadata(n)["state"]
        except Exception as e:
            raise _Damaged(f"metadata unreadable: {_why(e)}") from e
        tree = getattr(md, "tree", md)
        if tree is None:
            raise _Damaged("no state metadata")
        saved, _ = jax.tree_util.tree_flatten_with_path(tree)
        want, treedef = jax.tree_util.tree_flatten_with_path(target)
        differ = structure_difference(saved, want)
        if differ:
            raise RunDirError(f"{self.path}: checkpoint step {n} has a different state structure than the target "
                              f"(another architecture?): {differ}")
        # Restored as numpy with the saved dtypes (no sharding: nothing tied to the saving
        # device), hashed, then placed on this process's default device.
        abstract = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(tuple(m.shape), m.dtype) for _, m in saved])
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), info=ocp.args.JsonRestore())
        try:
            with quiet_stray_reads():
                out = mgr.restore(n, args=args)
            state, info = out["state"], out["info"]
        except Exception as e:
            raise _Damaged(_why(e)) from e
        if not isinstance(info, dict) or "state_sha256" not in info:
            raise _Damaged("info lacks state_sha256")
        if state_hash(state) != info["state_sha256"]:
            raise _Damaged("state hash mismatch")
        state = jax.tree.map(jax.device_put, state)  # the default device, as every other array
        return state, info

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


class _Damaged(Exception):
    """A step that cannot be trusted; the message says why."""
