"""``nn3 book``: the book's table as run directories, a report, and a second call that carries on.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_book.py -q

Everything runs on the synthetic data set (tests/conftest.py) with ``--quick``: one epoch
on the first 100 examples of each split. The stopped row is stopped through nn3's pause
hook (tests/children.py), never by timing.
"""
from __future__ import annotations

import os
import re

import pytest

from nn3 import cli
from nn3.runs import config as run_config
from nn3.engine import backend, threads
from nn3.book import command as book, report as bookreport
from nn3.store import metrics
from nn3.runs import presets
from nn3.store.rundir import RunDir
import children

pytest.importorskip("matplotlib")


def nn3(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _table(report: str) -> dict:
    """REPORT.md's table lines by row name: {name: [cells]}."""
    rows = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 9 and cells[0] not in ("row", "---"):
            rows[cells[0]] = cells
    return rows


def test_every_row_quotes_its_presets_figure_the_way_the_book_does():
    assert len(book.ROWS) == 17  # BOOK.md's 16 lines; "FC 300 / FC 1000" is two rows
    for r in book.ROWS:
        p = presets.get(r.preset)
        if r.members is None:
            assert p.book.startswith(f"{r.figure:.2f}% "), (r.name, p.book)
            assert ("validation" in p.book) == (r.measure == book.PEAK_VALIDATION)
        assert (p.style == "network3") == (r.measure == book.AT_BEST_VALIDATION), r.name
    assert (book.row("dropout_vote").preset, book.row("dropout_vote").members) == ("dropout", 5)


@pytest.mark.parametrize("r", book.ROWS + book.BEYOND, ids=lambda r: r.name)
def test_a_row_is_the_run_nn3_train_makes(r):
    # What `nn3 train PRESET [--members N] --run BOOKDIR/ROW` writes is adopted as the row.
    members = list(range(r.members)) if r.members else None
    made = run_config.train_config(r.preset, members=members, **{k: None for k in run_config.SETTINGS})
    mine = book.config(r)
    assert {k: made.get(k) for k in book.COMPARED} == {k: mine.get(k) for k in book.COMPARED}
    assert book.status("/nonexistent/row", mine).state == "new"


def test_measured_follows_the_book():
    h = [{"epoch": 0, "validation_accuracy": 0.95, "test_accuracy": 0.96},
         {"epoch": 1, "validation_accuracy": 0.97, "test_accuracy": 0.94},
         {"epoch": 2, "validation_accuracy": 0.97, "test_accuracy": 0.99},
         {"epoch": 3, "validation_accuracy": 0.96, "test_accuracy": 0.95}]
    assert book.measured(book.row("ch1"), h) == (0.99, 2)             # peak test
    assert book.measured(book.row("ch3_100"), h) == (0.97, 1)         # peak validation
    assert book.measured(book.row("dbl_conv"), h) == (0.94, 1)        # test at the first best validation
    assert book.measured(book.row("dbl_conv"), []) == (None, None)


def test_quick_book_trains_every_row_and_reports_it(tmp_path, capsys, synthetic_mnist):
    d = tmp_path / "book"
    code, out, err = nn3(capsys, "book", "--quick", "--dir", d, "--data", synthetic_mnist.path)
    assert code == 0, err
    table = _table((d / "REPORT.md").read_text(encoding="utf-8"))
    assert set(table) == {r.name for r in book.ROWS + book.BEYOND}
    for r in book.ROWS:
        cells = table[r.name]
        assert cells[3] == f"{r.figure:.2f}%"
        value = float(re.match(r"([\d.]+)% \(epoch 0\)", cells[4]).group(1))
        records = metrics.read(d / r.name)
        assert len(records) == 1 and records[0]["step"] == (50 if "expand" in str(presets.get(r.preset).sgd) else 10)
        assert value == pytest.approx(100 * book.measured(r, records)[0], abs=0.005)
        assert float(cells[5]) == pytest.approx(value - r.figure, abs=0.01)
        assert cells[6] == "1/1" and cells[7].endswith("s") and f"jax {backend.device_name()}" in cells[8]
    assert "members" in metrics.read(d / "dropout_vote")[0]
    for r in book.BEYOND:  # listed, with their settings, but not trained
        assert table[r.name][4] == "—" and f"- `{r.name}`: " in (d / "REPORT.md").read_text(encoding="utf-8")
    for png in ("curves.png", "misclassified.png"):
        assert (d / "figures" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[17/17 dropout_vote] epoch 1/1" in out and "left" in out


def test_a_second_book_skips_done_rows_and_resumes_a_stopped_one(tmp_path, capsys, synthetic_mnist):
    d, fresh = tmp_path / "book", tmp_path / "fresh"
    common = ["--quick", "--data", synthetic_mnist.path]
    assert nn3(capsys, "book", "--rows", "ch1", "--dir", d, *common)[0] == 0
    ch1_before = {p.name: p.stat().st_mtime_ns for p in (d / "ch1").iterdir()}

    # The next book skips ch1 and stops in ch3 at its pause (mid-epoch: step 5 of 10).
    argv = ["book", "--rows", "ch1,ch3", "--dir", d, *common]
    code, out, err, at = children.signalled(argv, 5, children.CTRL_C, tmp_path / "paused")
    assert code == 130 and at == "5", err
    assert "ch1] done: 1/1 epochs; skipped" in out and "ch3] starting" in out
    assert "not rewritten" in err and metrics.read(d / "ch3") == []

    code, out, err = nn3(capsys, "book", "--rows", "ch1,ch3", "--dir", d, *common)
    assert code == 0, err
    assert "ch1] done: 1/1 epochs; skipped" in out
    assert "ch3] resuming (stopped in epoch 0, after mini-batch 5)" in out
    assert {p.name: p.stat().st_mtime_ns for p in (d / "ch1").iterdir()} == ch1_before

    # resumed equals never stopped
    assert nn3(capsys, "book", "--rows", "ch3", "--dir", fresh, *common)[0] == 0
    assert metrics.read(d / "ch3") == metrics.read(fresh / "ch3")
    assert len(metrics.read(d / "ch3")) == 1


def test_seeds_are_runs_beside_the_row_and_the_best_is_quoted(tmp_path, capsys, synthetic_mnist):
    d = tmp_path / "book"
    code, out, _ = nn3(capsys, "book", "--quick", "--rows", "ch1", "--seeds", "0,1", "--dir", d,
                       "--data", synthetic_mnist.path)
    assert code == 0
    assert run_config.read_recorded(d / "ch1-seed1")["sgd"]["seed"] == 1
    assert "seed" not in run_config.read_recorded(d / "ch1")["sgd"]  # the preset's default seed, as nn3 train has it
    values = [100 * book.measured(book.row("ch1"), metrics.read(d / n))[0] for n in ("ch1", "ch1-seed1")]
    cell = _table((d / "REPORT.md").read_text(encoding="utf-8"))["ch1"][4]
    assert cell.startswith(f"{max(values):.2f}% (epoch 0); best of 2: seed 0 {values[0]:.2f}%, seed 1 {values[1]:.2f}%")


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, synthetic_mnist):
    d = tmp_path / "book"
    code, out, err = nn3(capsys, "book", "--rows", "nosuch", "--dir", d)
    assert code == 1 and err.startswith("nn3: error: --rows: no row 'nosuch'") and err.count("\n") == 1
    assert not d.exists()

    # a row's directory that holds another run (a quick one, where the full row belongs) is refused
    assert nn3(capsys, "book", "--quick", "--rows", "ch1", "--dir", d, "--data", synthetic_mnist.path)[0] == 0
    before = sorted(p.name for p in d.rglob("*"))
    code, out, err = nn3(capsys, "book", "--rows", "ch1", "--dir", d, "--data", synthetic_mnist.path)
    assert code == 1 and "ch1: holds a run whose sgd, limit differ" in err and err.count("\n") == 1
    assert sorted(p.name for p in d.rglob("*")) == before

    code, _, err = nn3(capsys, "book", "--rows", "ch1", "--beyond")
    assert code == 2 and "not allowed with argument" in err


def test_a_run_of_nn3_train_in_the_rows_place_is_adopted(tmp_path, capsys, synthetic_mnist):
    d = tmp_path / "book"
    # the quick row's settings, given to nn3 train by hand
    code, _, err = nn3(capsys, "train", "ch3", "--limit", book.QUICK_LIMIT, "--epochs", 1, "--chunks", 2,
                       "--run", d / "ch3", "--data", synthetic_mnist.path, "--quiet")
    assert code == 0, err
    trained = metrics.read(d / "ch3")
    # its files' times give its wall time, whatever they are: here both files have one time
    stamp = (d / "ch3" / "config.json").stat().st_mtime
    os.utime(d / "ch3" / metrics.METRICS, (stamp, stamp))
    code, out, err = nn3(capsys, "book", "--quick", "--rows", "ch3", "--dir", d, "--data", synthetic_mnist.path)
    assert code == 0, err
    assert "[1/1 ch3] done: 1/1 epochs; skipped" in out and metrics.read(d / "ch3") == trained
    assert book.read_ledger(d)["rows"]["ch3"]["adopted"] is True
    cells = _table((d / "REPORT.md").read_text(encoding="utf-8"))["ch3"]
    assert cells[4].startswith(f"{100 * trained[0]['test_accuracy']:.2f}%") and cells[7] == "≈0.0 s"

    # a row that nn3 book started is not estimated
    assert nn3(capsys, "book", "--quick", "--rows", "ch1", "--dir", d, "--data", synthetic_mnist.path)[0] == 0
    assert book.read_ledger(d)["rows"]["ch1"]["adopted"] is False
    assert not _table((d / "REPORT.md").read_text(encoding="utf-8"))["ch1"][7].startswith("≈")


def _diverging(monkeypatch, epochs=4, eta=1000.0):
    """Rows whose config has ``eta`` (1000: ch3 diverges in epoch 2 on the quick synthetic data)."""
    plain = book.config

    def config(r, seed=book.DEFAULT_SEED, **kw):
        cfg = plain(r, seed, **kw)
        cfg["sgd"].update(eta=eta, epochs=epochs)
        return cfg
    monkeypatch.setattr(book, "config", config)
    monkeypatch.setattr(bookreport, "config", config)


@pytest.mark.parametrize("eta, epochs_done", [(1000.0, 2), (1e6, 0)], ids=["in epoch 2", "in epoch 0"])
def test_a_diverged_row_is_done_and_not_trained_again(tmp_path, capsys, synthetic_mnist, monkeypatch, eta, epochs_done):
    d = tmp_path / "book"
    _diverging(monkeypatch, eta=eta)
    common = ["book", "--quick", "--rows", "ch3", "--dir", d, "--data", synthetic_mnist.path]
    code, out, err = nn3(capsys, *common)
    assert code == 0, err
    assert "diverged (NaN loss)" in out
    records = metrics.read(d / "ch3")
    assert len(records) == epochs_done
    run = RunDir.open(d / "ch3", read_only=True)
    try:
        last = run.steps()[-1]
        assert last == 10 * epochs_done and run.read_info(last)["loop"]["stop_reason"] == "nan"
    finally:
        run.close()
    st = book.status(d / "ch3", book.config(book.row("ch3"), quick=True, data_path=synthetic_mnist.path))
    assert (st.state, st.epochs, st.reason) == ("done", epochs_done, "diverged")
    assert _table((d / "REPORT.md").read_text(encoding="utf-8"))["ch3"][6] == f"{epochs_done}/4 (diverged)"

    code, out, err = nn3(capsys, *common)  # the second book skips it
    assert code == 0, err
    assert f"[1/1 ch3] done: {epochs_done}/4 epochs (diverged); skipped" in out
    assert metrics.read(d / "ch3") == records


def test_seeds_that_never_ran_are_not_listed(tmp_path, capsys, synthetic_mnist):
    d = tmp_path / "book"
    code, _, err = nn3(capsys, "book", "--quick", "--rows", "ch1", "--seeds", "1,2", "--dir", d,
                       "--data", synthetic_mnist.path)
    assert code == 0, err
    assert not (d / "ch1").exists()
    cell = _table((d / "REPORT.md").read_text(encoding="utf-8"))["ch1"][4]
    assert "best of 2: seed 1 " in cell and "seed 0" not in cell


def test_threads_are_chosen_from_the_configs_before_any_run_directory_is_opened(
        tmp_path, capsys, synthetic_mnist, monkeypatch):
    d = tmp_path / "book"
    assert nn3(capsys, "book", "--quick", "--rows", "ch1", "--dir", d, "--data", synthetic_mnist.path)[0] == 0
    events = []
    opened = book.status
    monkeypatch.setattr(book, "status", lambda *a, **k: events.append("status") or opened(*a, **k))
    monkeypatch.setattr(threads, "limit", lambda n, first=0: events.append(("limit", n)) or False)
    monkeypatch.setattr(threads, "host_devices", lambda n: events.append(("host_devices", n)) or False)
    monkeypatch.delenv(threads.ENV, raising=False)

    assert nn3(capsys, "book", "--quick", "--rows", "ch1", "--dir", d, "--data", synthetic_mnist.path)[0] == 0
    assert events[0] == ("limit", 1) and "status" in events  # ch1 is done: its directory is opened after

    events.clear()  # a vote's row: one CPU device per core, as nn3 train --members gives it
    code, _, err = nn3(capsys, "book", "--quick", "--rows", "ch1,dropout_vote", "--dir", d, "--report-only",
                       "--data", synthetic_mnist.path)
    assert code == 0, err
    assert events == ["status", "status"]  # --report-only trains nothing: JAX starts as it will
    events.clear()
    book.limit_threads(c for _, _, c in book.configs(book.select("ch1,dropout_vote"), quick=True))
    assert events == [("host_devices", min(5, threads.cores()))]


def test_the_time_left_counts_no_epochs_of_a_row_that_ended_early():
    cfg = book.config(book.row("ch1"), quick=True)
    cfg["sgd"]["epochs"] = 3
    new = book.Status("new", 0, "not started")
    now = [0.0]
    progress = book.Progress([(None, 0, cfg, None, new), (None, 0, cfg, None, new)], lambda line: None,
                             clock=lambda: now[0])
    progress.row()
    for t in (10.0, 12.0):  # the first epoch: 10 s (8 of them start-up), the second 2 s
        now[0] = t
        progress.epoch("ch1", cfg, {"epoch": 0})
    progress.end()  # it stopped early (early stopping, the eta floor, a divergence) after 2 of 3 epochs
    progress.row()
    assert progress.estimate() == "about 14.0 s left"  # the next row: 8 s start-up + 3 epochs of 2 s


@pytest.mark.skipif(threads.cores() < 2, reason="one core: one CPU device")
def test_a_second_book_gives_a_vote_one_cpu_device_per_core(tmp_path, capsys, synthetic_mnist):
    # In a process of its own (JAX starts once): ch1 is done, so its run directory is opened
    # before the vote's row starts; the vote still gets its devices, as nn3 train --members.
    if not backend.device_name().startswith("cpu") or threads.user_chose_devices():
        pytest.skip("the devices are an accelerator's, or the user's choice")
    d = tmp_path / "book"
    common = ["--quick", "--dir", d, "--data", synthetic_mnist.path]
    assert nn3(capsys, "book", "--rows", "ch1", *common)[0] == 0
    argv = ["book", "--rows", "ch1,dropout_vote", *common]
    code, out, err, at = children.signalled(argv, "loaded", children.CTRL_C, tmp_path / "paused")
    assert at == "loaded" and code == 130, err
    assert "ch1] done: 1/1 epochs; skipped" in out
    assert f", {min(5, threads.cores())} device(s)" in out
