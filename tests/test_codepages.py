"""A run directory named in Japanese, nn3's output to a pipe and to a file, under code pages 1252 and 932.

    .venv/bin/python -m pytest tests/test_codepages.py -q

Python writes a pipe or a file in the locale's encoding: on Windows the ANSI code page,
cp1252 in western Europe and America, cp932 in Japan (``PYTHONIOENCODING`` sets it here,
on Linux and under Windows CPython alike). A path may hold characters that encoding lacks
(``山田`` in cp1252); nothing nn3 prints may end a command for it. Each case runs the
reader's path in child processes: ``train`` stopped by Ctrl-C at a known point, then
``resume``, ``replay``, ``export`` and ``presets``; then ``serve``'s index of the runs.
What the encoding cannot hold comes out escaped (``\\u5c71``), as Python's stderr always
escapes it; what it can hold comes out as it is. A console (Windows' WriteConsoleW, a
UTF-8 terminal) shows every character, and is not what these tests test.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

import children

ENCODINGS = ("cp1252", "cp932")
RUNS = "山田"          # the folder of runs: cp932 holds it, cp1252 does not
RUN = "実験-é"         # a run: é is in cp1252, not in cp932; 実験 only in cp932
EPOCH = 30             # --limit 300 in mini-batches of 10: 30 a epoch


def shown(text, encoding) -> str:
    """``text`` as it reads back from output in ``encoding``: escaped where it cannot be encoded."""
    return str(text).encode(encoding, "backslashreplace").decode(encoding)


def env_for(encoding) -> dict:
    """PYTHONIOENCODING for a child: cp1252 with Windows' default error handler for stdout
    (surrogateescape), cp932 with the platform's own (strict on POSIX)."""
    return {**os.environ, "PYTHONIOENCODING": encoding + (":surrogateescape" if encoding == "cp1252" else "")}


@pytest.mark.parametrize("errors", ["strict", "surrogateescape"])
def test_printable_output_escapes_what_the_encoding_lacks_and_keeps_undecoded_bytes(errors):
    from nn3 import cli
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="cp1252", errors=errors)
    undecoded = b"\xff".decode("utf-8", "surrogateescape")   # a POSIX file name's byte that was no UTF-8
    real, sys.stdout = sys.stdout, stream
    try:
        with cli._printable_output():
            print(f"run directory: C:\\runs\\山田 é {undecoded}")
    finally:
        sys.stdout = real
    stream.flush()
    assert raw.getvalue() == b"run directory: C:\\runs\\\\u5c71\\u7530 \xe9 \xff" + os.linesep.encode()
    assert stream.errors == errors   # given back as it was


def commands(argvs, env, stdout):
    """``nn3.cli.main`` of each argv in turn, in one child whose stdout goes to ``stdout``
    (a pipe or a file): (its exit codes, stdout as text or None, stderr)."""
    code = ("import json, sys\nfrom nn3 import cli\ncodes = [cli.main(a) for a in json.loads(sys.argv[1])]\n"
            "print('exit codes', json.dumps(codes), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, json.dumps([[str(a) for a in v] for v in argvs])],
                          env={**env, "PYTHONPATH": str(children.ROOT)}, stdout=stdout, stderr=subprocess.PIPE,
                          timeout=600)
    err = done.stderr.decode(env["PYTHONIOENCODING"].split(":")[0])
    assert done.returncode == 0 and "exit codes" in err, err
    out = None if done.stdout is None else done.stdout.decode(env["PYTHONIOENCODING"].split(":")[0])
    return json.loads(err.rsplit("exit codes", 1)[1].splitlines()[0]), out, err


@pytest.mark.parametrize("to", ["pipe", "file"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_japanese_run_directory_stops_resumes_replays_and_exports(tmp_path, synthetic_mnist, encoding, to):
    env = env_for(encoding)
    run = tmp_path / RUNS / RUN
    out_file = tmp_path / "stdout.txt"

    def destination():
        return subprocess.PIPE if to == "pipe" else open(out_file, "wb")

    def written(out) -> str:
        return out if to == "pipe" else out_file.read_bytes().decode(encoding)

    sink = destination()
    try:
        code, out, err, at = children.signalled(
            ["train", "ch1", "--run", run, "--epochs", 2, "--limit", 300, "--data", synthetic_mnist.path, "--quiet"], EPOCH, children.CTRL_C,
            tmp_path / "paused", env, stdout=sink, encoding=encoding)
    finally:
        if sink is not subprocess.PIPE:
            sink.close()
    out = written(out)
    assert (code, at) == (130, str(EPOCH)), (children.HOW[children.CTRL_C], err)
    assert f"run directory: {shown(run, encoding)}" in out.splitlines()
    assert f"carry on with: nn3 resume {shown(run, encoding)}" in err
    if encoding == "cp932":
        assert "山田" in out and "山田" in err   # written as they are, not escaped
    else:
        assert "\\u5c71\\u7530" in out and "\\u5c71\\u7530" in err

    net = tmp_path / RUNS / f"{RUN}.json"
    sink = destination()
    try:
        codes, out, err = commands([["resume", run, "--quiet"], ["replay", run], ["export", run, net], ["presets"]],
                                   env, sink)
    finally:
        if sink is not subprocess.PIPE:
            sink.close()
    out = written(out)
    assert codes == [0, 0, 0, 0], err
    lines = out.splitlines()
    assert f"run directory: {shown(run, encoding)}" in lines                      # resume
    assert "recorded at save time" in out and out.count("-- equal") == 1          # replay
    assert any(line.startswith(f"wrote {shown(net, encoding)} (step 60") for line in lines)   # export
    assert any(line.startswith("ch1 ") for line in lines)                          # presets
    assert json.loads(net.read_text(encoding="utf-8"))["sizes"] == [784, 30, 10]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_serve_lists_a_japanese_run(tmp_path, base_run, encoding):
    import shutil
    shutil.copytree(base_run, tmp_path / RUNS / RUN)
    proc = children.popen(["serve", tmp_path / RUNS], env_for(encoding),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding=encoding)
    try:
        line = proc.stdout.readline()
        assert line.startswith("nn3 serve: 1 run at http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "api/runs", timeout=120) as r:
            listed = json.loads(r.read().decode("utf-8"))
        with urllib.request.urlopen(url, timeout=120) as r:
            page = r.read().decode("utf-8")
        with urllib.request.urlopen(f"{url}api/runs/{urllib.parse.quote(RUN)}/summary", timeout=120) as r:
            summary = json.loads(r.read().decode("utf-8"))
        children.send(proc, children.CTRL_C)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert RUN in json.dumps(listed, ensure_ascii=False), listed
    assert "<html" in page.lower() and summary
    assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err, err
