"""Tests for nn3.store.data: both file formats, the checks, safe unpickling, download, expansion.

    python -m pytest tests/test_data.py -q          # the real file too, where nn3 finds it
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import pickle
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from nn3.store import data, readers, sources
from nn3.store.data import DataError

SIZES = (50, 10, 10)   # synthetic training, validation, test


def write_idx(path: Path, arr: np.ndarray, magic: int | None = None, gz=True):
    """Writes an IDX file of unsigned bytes (images (N, 28, 28) or labels (N,))."""
    magic = (0x0800 | arr.ndim) if magic is None else magic
    head = struct.pack(f">I{arr.ndim}I", magic, *arr.shape)
    raw = head + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw, compresslevel=1) if gz else raw)
    return path


def write_idx_set(folder: Path, pix, labels, gz=True, n_test=SIZES[2]):
    """The four IDX files from pixels ``pix`` (N, 784) uint8; the last n_test are the test set."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    imgs = pix.reshape(-1, 28, 28)
    write_idx(folder / f"train-images-idx3-ubyte{ext}", imgs[:-n_test], gz=gz)
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", labels[:-n_test], gz=gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", imgs[-n_test:], gz=gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", labels[-n_test:], gz=gz)
    return folder


def book_splits(pix, labels, sizes=SIZES):
    x, y = pix.astype(np.float32) / 256, labels.astype(np.int64)
    a, b = sizes[0], sizes[0] + sizes[1]
    return ((x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:]))


def write_pkl(path: Path, splits, protocol=2):
    with gzip.open(path, "wb", compresslevel=1) as f:
        pickle.dump(splits, f, protocol=protocol)
    return path


@pytest.fixture
def pixels():
    rng = np.random.default_rng(0)
    n = sum(SIZES)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Each test runs in its own cwd (so ./data is empty), with no $NN3_DATA_DIR and no
    Debian Fashion-MNIST folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NN3_DATA_DIR", raising=False)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    data.clear_cache()


def one_line_error(match, fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg and match in msg, msg
    return msg


def test_pickle_and_idx_give_identical_arrays(tmp_path, pixels):
    pkl = write_pkl(tmp_path / "mnist.pkl.gz", book_splits(*pixels))
    for gz in (True, False):
        idx = write_idx_set(tmp_path / f"idx{gz}", *pixels, gz=gz)
        a = data.load_data(pkl, sizes=SIZES, cache=False)
        b = data.load_data(idx, sizes=SIZES, cache=False)
        for (xa, ya), (xb, yb), n in zip(a, b, SIZES):
            assert xa.shape == xb.shape == (n, 784) and xa.dtype == xb.dtype == np.float32
            assert ya.shape == yb.shape == (n,) and ya.dtype == yb.dtype == np.int64
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


def test_search_order_and_fashion_folders(tmp_path, pixels, monkeypatch):
    Path("data").mkdir()
    write_pkl(Path("data/mnist.pkl.gz"), book_splits(*pixels))
    assert data.find_source().files[0] == Path("data/mnist.pkl.gz").absolute()
    env = write_idx_set(tmp_path / "env", *pixels)
    monkeypatch.setenv("NN3_DATA_DIR", str(env))
    assert data.find_source().kind == "idx"                      # $NN3_DATA_DIR before ./data
    one_line_error("no data found", data.find_source, dataset="fashion")
    write_idx_set(Path("data/fashion-mnist"), *pixels)
    src = data.find_source(dataset="fashion")
    assert src.kind == "idx" and src.files[0].parent.name == "fashion-mnist"
    (x, _), _, _ = data.load_data(dataset="fashion", sizes=SIZES)
    assert x.shape == (50, 784)
    # An IDX file's own path stands for its folder.
    assert data.find_source(env / "t10k-images-idx3-ubyte.gz").files == data.find_source(env).files


def test_debian_fashion_folder_comes_last(tmp_path, pixels, monkeypatch):
    debian = write_idx_set(tmp_path / "debian", *pixels)
    monkeypatch.setattr(sources, "DEBIAN_FASHION_DIR", debian)
    assert data.find_source(dataset="fashion").files[0].parent == debian
    write_idx_set(Path("data/fashion-mnist"), *pixels)
    assert data.find_source(dataset="fashion").files[0].parent.name == "fashion-mnist"


def test_cache_is_keyed_by_mtime(tmp_path, pixels, monkeypatch):
    pkl = write_pkl(tmp_path / "m.pkl.gz", book_splits(*pixels))
    a = data.load_data(pkl, sizes=SIZES)
    decoded, real = [], readers.load_source
    with monkeypatch.context() as m:
        m.setattr(readers, "load_source", lambda *args: decoded.append(1) or real(*args))
        b = data.load_data(pkl, sizes=SIZES)
        assert decoded == [] and np.array_equal(a[0][0], b[0][0])  # one decoded set behind both
        os.utime(pkl, ns=(1, 1))
        c = data.load_data(pkl, sizes=SIZES)
        assert decoded == [1] and np.array_equal(c[0][0], a[0][0])  # a changed file is decoded again
    assert data.load_data(pkl, sizes=SIZES, cache=False)[0][0].flags.writeable


def test_decoded_arrays_are_kept_for_the_next_process(tmp_path, pixels, monkeypatch):
    monkeypatch.setenv("NN3_DATA_CACHE", str(tmp_path / "arrays"))
    pkl = write_pkl(tmp_path / "m.pkl.gz", book_splits(*pixels))
    first = data.load_data(pkl, sizes=SIZES)
    data.clear_cache()  # as a new process would start
    with monkeypatch.context() as m:
        m.setattr(readers, "load_source", lambda *a: pytest.fail("decoded again"))
        again = data.load_data(pkl, sizes=SIZES)
    for (x0, y0), (x1, y1) in zip(first, again):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
        assert x1.flags.writeable and x1.dtype == np.float32 and y1.dtype == np.int64
    with gzip.open(pkl, "wb") as f:  # the file changes: decoded (and checked) again
        f.write(b"not a pickle")
    data.clear_cache()
    one_line_error("m.pkl.gz", data.load_data, pkl, sizes=SIZES)


def test_python3_pickle_protocols_load(tmp_path, pixels):
    want = book_splits(*pixels)
    for protocol in (2, 4, 5):
        pkl = write_pkl(tmp_path / f"p{protocol}.pkl.gz", want, protocol)
        got = data.load_data(pkl, sizes=SIZES)
        np.testing.assert_array_equal(got[2][0], want[2][0])


# ------------------------------------------------------------------ bad files

def test_truncated_gzip(tmp_path, pixels):
    pkl = write_pkl(tmp_path / "cut.pkl.gz", book_splits(*pixels))
    pkl.write_bytes(pkl.read_bytes()[:5000])
    msg = one_line_error("truncated or corrupt gzip", data.load_data, pkl, sizes=SIZES)
    assert str(pkl) in msg
    idx = write_idx_set(tmp_path / "idx", *pixels)
    f = idx / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-20])
    assert str(f) in one_line_error("truncated or corrupt gzip", data.load_data, idx, sizes=SIZES)


def test_wrong_hash_when_required(tmp_path, pixels):
    pkl = write_pkl(tmp_path / "mnist.pkl.gz", book_splits(*pixels))
    msg = one_line_error("does not match the known f11bb9e4", data.load_data, pkl, sizes=SIZES,
                         verify=True)
    assert str(pkl) in msg and "SHA-256" in msg
    idx = write_idx_set(tmp_path / "idx", *pixels)
    one_line_error("MD5", data.load_data, idx, sizes=SIZES, verify=True)


@pytest.mark.parametrize("fault, match", [
    ("magic", "bad IDX magic number 0x00000804"),
    ("shape", "images are 27x29, expected 28x28"),
    ("count", "60 images but 59 labels"),
    ("short", "truncated or padded"),
    ("label", "labels outside 0-9"),
    ("size", "60 images, expected 61"),
])
def test_bad_idx(tmp_path, pixels, fault, match):
    idx = write_idx_set(tmp_path / "idx", *pixels)
    imgs, labels = pixels[0][:60].reshape(60, 28, 28), pixels[1][:60]
    f = idx / "train-images-idx3-ubyte.gz"
    if fault == "magic":
        write_idx(f, imgs, magic=0x0804)
    elif fault == "shape":
        write_idx(f, pixels[0][:60].reshape(-1)[:60 * 27 * 29].reshape(60, 27, 29))
    elif fault == "count":
        write_idx(f := idx / "train-labels-idx1-ubyte.gz", labels[:59])
        f = idx / "train-images-idx3-ubyte.gz"
    elif fault == "short":
        raw = gzip.decompress(f.read_bytes())[:-1]
        f.write_bytes(gzip.compress(raw))
    elif fault == "label":
        write_idx(f := idx / "train-labels-idx1-ubyte.gz", np.where(labels == 3, 10, labels))
    sizes = (51, 10, 10) if fault == "size" else SIZES
    assert str(f) in one_line_error(match, data.load_data, idx, sizes=sizes)


@pytest.mark.parametrize("fault, match", [
    ("nan", "NaN or pixels outside [0, 1]"),
    ("range", "NaN or pixels outside [0, 1]"),
    ("label", "labels outside 0-9"),
    ("size", "validation split has 9 examples, expected 10"),
    ("mismatch", "test split has 10 images but 9 labels"),
    ("shape", "expected (N, 784) float"),
    ("structure", "expected (training, validation, test)"),
    ("garbage", "not a valid pickle"),
])
def test_bad_pickle(tmp_path, pixels, fault, match):
    (tx, ty), (vx, vy), (ex, ey) = splits = [list(s) for s in book_splits(*pixels)]
    if fault == "nan":
        tx[3, 5] = np.nan
    elif fault == "range":
        ex[0, 0] = 1.5
    elif fault == "label":
        ty[7] = -1
    elif fault == "size":
        splits[1] = (vx[:9], vy[:9])
    elif fault == "mismatch":
        splits[2] = (ex, ey[:9])
    elif fault == "shape":
        splits[0] = (tx.reshape(-1, 28, 28), ty)
    elif fault == "structure":
        splits = {"train": splits}
    pkl = write_pkl(tmp_path / "bad.pkl.gz", splits if fault == "structure" else tuple(map(tuple, splits)))
    if fault == "garbage":
        pkl.write_bytes(gzip.compress(b"\x80\x02 this is no pickle"))
    assert str(pkl) in one_line_error(match, data.load_data, pkl, sizes=SIZES)


def test_a_pickle_named_by_path_may_be_any_size_a_searched_one_may_not(tmp_path, pixels):
    """Standard sizes guard the file found by search; a file the caller names is taken as it
    is (a subset, the tests' synthetic set), still checked split by split."""
    splits = book_splits(*pixels)
    pkl = write_pkl(tmp_path / "small.pkl.gz", splits)
    for got, (x, y) in zip(data.load_data(pkl), splits):
        np.testing.assert_array_equal(got[0], x)
        np.testing.assert_array_equal(got[1], y)
    assert [len(x) for x, _ in data.load_data(tmp_path / "small.pkl.gz", cache=False)] == list(SIZES)
    Path("data").mkdir()
    write_pkl(Path("data/mnist.pkl.gz"), splits)
    one_line_error("training split has 50 examples, expected 50000 or 250000", data.load_data)
    assert len(data.load_data("data")[0][0]) == 50                       # named: a folder with it
    one_line_error("60 images, expected 60000", data.load_data, write_idx_set(tmp_path / "idx", *pixels))
    (tx, ty), (vx, vy), test = splits
    empty = write_pkl(tmp_path / "empty.pkl.gz", ((tx, ty), (vx[:0], vy[:0]), test), protocol=4)
    assert str(empty) in one_line_error("the validation split is empty", data.load_data, empty)


def test_missing_path_and_unknown_dataset(tmp_path):
    one_line_error("no such file or folder", data.load_data, tmp_path / "nope")
    one_line_error("no mnist.pkl.gz or the four MNIST IDX files there", data.load_data, tmp_path)
    one_line_error("unknown dataset 'cifar'", data.load_data, dataset="cifar")


@pytest.mark.parametrize("module, name, arg", [
    ("os", "system", "touch {}"),
    ("posix", "system", "touch {}"),
    ("builtins", "exec", "open({!r}, 'w')"),
])
def test_unpickler_refuses_code(tmp_path, module, name, arg):
    marker = tmp_path / "pwned"
    call = arg.format(str(marker))
    # Protocol 0 by hand: GLOBAL module.name, MARK, STRING arg, TUPLE, REDUCE, STOP.
    body = f"c{module}\n{name}\n(S{call!r}\ntR.".encode()
    evil = tmp_path / "evil.pkl.gz"
    evil.write_bytes(gzip.compress(body))
    msg = one_line_error(f"refused global {module}.{name}", data.load_data, evil)
    assert str(evil) in msg
    assert not marker.exists()


# ------------------------------------------------------------------ download

@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/served; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_download_with_the_right_hash(server, pixels, monkeypatch):
    served, url = server
    pkl = write_pkl(served / "mnist.pkl.gz", book_splits(*pixels))
    digest = hashlib.sha256(pkl.read_bytes()).hexdigest()
    monkeypatch.setitem(data.HASHES["mnist"], "mnist.pkl.gz", "sha256:" + digest)
    (x, y), _, _ = data.load_data(download=True, sizes=SIZES, base_urls={"mnist": url})
    assert Path("data/mnist.pkl.gz").read_bytes() == pkl.read_bytes()
    np.testing.assert_array_equal(x, pixels[0][:50].astype(np.float32) / 256)
    assert sorted(p.name for p in Path("data").iterdir()) == ["mnist.pkl.gz"]   # no temp left


def test_download_with_a_wrong_hash_is_refused(server, pixels):
    served, url = server
    write_pkl(served / "mnist.pkl.gz", book_splits(*pixels))
    msg = one_line_error("refused and deleted", data.load_data, download=True, sizes=SIZES,
                         base_urls={"mnist": url})
    assert "f11bb9e4" in msg
    assert not Path("data").exists() or list(Path("data").iterdir()) == []


def publish_idx(folder, pixels, dataset, monkeypatch):
    """Serves IDX files from ``folder`` and makes their MD5s the known ones."""
    write_idx_set(folder, *pixels)
    for name in [n for n in data.HASHES[dataset] if "idx" in n]:
        digest = hashlib.md5((folder / name).read_bytes()).hexdigest()
        monkeypatch.setitem(data.HASHES[dataset], name, "md5:" + digest)


def test_fetch_fashion_idx_files(server, pixels, monkeypatch):
    served, url = server
    publish_idx(served / "fashion", pixels, "fashion", monkeypatch)
    got = data.fetch("fashion", base_urls={"fashion": url + "fashion/"}, progress=False)
    assert got == Path("data/fashion-mnist")
    assert data.load_data(dataset="fashion", sizes=SIZES)[2][0].shape == (10, 784)


def test_fetch_mnist_falls_back_to_the_idx_mirror(server, pixels, monkeypatch):
    served, url = server
    publish_idx(served / "idx", pixels, "mnist", monkeypatch)
    urls = {"mnist": url + "missing/", "mnist-idx": url + "idx/"}       # the pickle is a 404
    a = data.load_data(download=True, sizes=SIZES, base_urls=urls)
    assert data.find_source().kind == "idx"
    np.testing.assert_array_equal(a[1][0], book_splits(*pixels)[1][0])


def test_no_network_lists_where_it_looked(tmp_path):
    with socket.socket() as s:          # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    urls = {"mnist": dead, "mnist-idx": dead}
    msg = one_line_error("download failed", data.load_data, download=True, base_urls=urls)
    assert "$NN3_DATA_DIR (unset)" in msg and str(tmp_path / "data") in msg
    assert "put mnist.pkl.gz or the four MNIST IDX files in ./data/" in msg
    assert "refused" in msg.lower()
    msg = one_line_error("nn3 data --fetch", data.load_data)                  # download off
    assert str(tmp_path / "data") in msg


# ------------------------------------------------------------------ expanded set

def test_expand_shifts_and_shuffles():
    img = np.zeros((28, 28), np.float32)
    img[0, 0], img[5, 7], img[27, 27] = 0.5, 0.25, 0.75
    x, y = img.reshape(1, 784), np.array([4])
    ex, ey = data.expand(x, y, seed=1)
    assert ex.shape == (5, 784) and ex.dtype == np.float32 and ey.tolist() == [4] * 5
    got = {tuple(np.argwhere(e.reshape(28, 28) == 0.25)[0]) for e in ex}
    assert got == {(5, 7), (4, 7), (6, 7), (5, 6), (5, 8)}
    sums = sorted(float(e.sum()) for e in ex)     # edge pixels fall off, zeros come in
    assert sums == sorted([1.5, 1.0, 0.75, 1.0, 0.75])

    rng = np.random.default_rng(0)
    xs, ys = rng.random((40, 784), dtype=np.float32), rng.integers(0, 10, 40)
    a, b = data.expand(xs, ys, seed=3), data.expand(xs, ys, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], data.expand(xs, ys, seed=4)[0])
    originals = {r.tobytes() for r in xs}
    assert sum(r.tobytes() in originals for r in a[0]) == 40
    assert np.bincount(a[1], minlength=10).tolist() == (5 * np.bincount(ys, minlength=10)).tolist()


def test_write_expanded_round_trip(tmp_path, pixels):
    pkl = write_pkl(tmp_path / "mnist.pkl.gz", book_splits(*pixels))
    (tmp_path / "out").mkdir()
    out = data.write_expanded(tmp_path / "out" / "mnist_expanded.pkl.gz", pkl, sizes=SIZES,
                              seed=2)
    (tx, ty), (vx, _), _ = data.load_data(out, sizes=(250, 10, 10))
    assert tx.shape == (250, 784) and ty.shape == (250,)
    np.testing.assert_array_equal(tx, data.expand(*book_splits(*pixels)[0], seed=2)[0])
    np.testing.assert_array_equal(vx, book_splits(*pixels)[1][0])
    assert [p.name for p in out.parent.iterdir()] == ["mnist_expanded.pkl.gz"]


def test_write_expanded_from_the_array_cache_reads_back(tmp_path, pixels, monkeypatch):
    """A second process finds the original's arrays memory-mapped from the array cache;
    the expanded file must still hold plain arrays that the numpy-only unpickler reads."""
    monkeypatch.setenv("NN3_DATA_CACHE", str(tmp_path / "cache"))
    pkl = write_pkl(tmp_path / "mnist.pkl.gz", book_splits(*pixels))
    data.load_data(pkl, sizes=SIZES)          # decoded, and kept on disk
    data.clear_cache()                        # as in a new process: the next load maps the cache
    x = data.load_data(pkl, sizes=SIZES)[1][0]
    assert isinstance(x, np.memmap) or isinstance(x.base, np.memmap)  # a (copy-on-write) map of the cache
    out = data.write_expanded(tmp_path / "mnist_expanded.pkl.gz", pkl, sizes=SIZES, seed=2)
    data.clear_cache()
    (tx, _), (vx, vy), (ex, _) = data.load_data(out, sizes=(250, 10, 10))
    np.testing.assert_array_equal(tx, data.expand(*book_splits(*pixels)[0], seed=2)[0])
    np.testing.assert_array_equal(vx, book_splits(*pixels)[1][0])
    np.testing.assert_array_equal(ex, book_splits(*pixels)[2][0])


def test_write_expanded_needs_an_existing_folder(tmp_path, pixels):
    pkl = write_pkl(tmp_path / "mnist.pkl.gz", book_splits(*pixels))
    msg = one_line_error("no such folder", data.write_expanded, tmp_path / "no" / "where" / "x.pkl.gz",
                         pkl, sizes=SIZES)
    assert str(tmp_path / "no" / "where") in msg
    assert not (tmp_path / "no").exists()
    one_line_error("is a folder", data.write_expanded, tmp_path, pkl, sizes=SIZES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.pkl.gz"]


def write_book_expanded(path, splits, seed=0, protocol=2):
    """The file as the book's expand_mnist.py writes it: the training split is a pair
    of lists (one (784,) array per image, numpy int labels), shuffled; the others as read."""
    (x, y), validation, test = splits
    pairs = []
    for img, label in zip(x, y):
        pairs.append((img, label))
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            moved = np.roll(img.reshape(28, 28), (dr, dc), axis=(0, 1))
            if dr:
                moved[0 if dr > 0 else 27, :] = 0
            else:
                moved[:, 0 if dc > 0 else 27] = 0
            pairs.append((moved.reshape(784), label))
    np.random.default_rng(seed).shuffle(pairs)
    training = [list(d) for d in zip(*pairs)]
    return write_pkl(path, (training, validation, test), protocol=protocol)


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_the_books_expanded_file_of_lists_loads(tmp_path, pixels, protocol, monkeypatch):
    splits = book_splits(*pixels)
    out = write_book_expanded(tmp_path / "mnist_expanded.pkl.gz", splits, protocol=protocol)
    (tx, ty), (vx, vy), _ = data.load_data(out, sizes=(250, 10, 10))
    assert tx.shape == (250, 784) and tx.dtype == np.float32 and ty.shape == (250,) and ty.dtype == np.int64
    assert sorted(r.tobytes() + bytes([int(v)]) for r, v in zip(tx, ty)) == \
        sorted(r.tobytes() + bytes([int(v)]) for r, v in zip(*data.expand(*splits[0])))
    np.testing.assert_array_equal(vx, splits[1][0])
    # network3's loader, as conv.py's expanded_data() calls it (sizes as MNIST's, scaled down)
    from nn3 import network3
    monkeypatch.setattr(sources, "STANDARD_SIZES", SIZES)
    data.clear_cache()
    training, validation, test = network3.load_data_shared(str(out))
    np.testing.assert_array_equal(training[0], tx)
    np.testing.assert_array_equal(training[1], ty)


@pytest.mark.parametrize("fault, match", [
    ("image", "training images[3] is a str, expected a float array of shape (784,)"),
    ("shape", "training images[3] is a (28, 28) float32 array"),
    ("label", "training labels[3] is 1.5, expected an int 0-9"),
    ("range", "training labels[3] is 12"),
    ("bool", "training labels[3] is True"),
    ("count", "training split has 250 images but 249 labels"),
])
def test_lists_in_a_pickle_are_checked_item_by_item(tmp_path, pixels, fault, match):
    (x, y), validation, test = data.expand(*book_splits(*pixels)[0]), *book_splits(*pixels)[1:]
    images, labels = list(x), [np.int64(v) for v in y]
    if fault == "image":
        images[3] = "os.system"
    elif fault == "shape":
        images[3] = images[3].reshape(28, 28)
    elif fault == "count":
        labels.pop()
    else:
        labels[3] = {"label": 1.5, "range": 12, "bool": True}[fault]
    pkl = write_pkl(tmp_path / "x.pkl.gz", ((images, labels), validation, test))
    one_line_error(match, data.load_data, pkl, sizes=(250, 10, 10))


def test_verify_checks_an_expanded_set_by_its_derivation(tmp_path, pixels, monkeypatch):
    monkeypatch.setattr(sources, "STANDARD_SIZES", SIZES)     # MNIST's sizes, scaled down: sizes=None below
    splits = book_splits(*pixels)
    original = write_pkl(tmp_path / "mnist.pkl.gz", splits)
    monkeypatch.setitem(data.HASHES["mnist"], data.PICKLE_NAME, "sha256:" + data.file_digest(original))
    ours = data.write_expanded(tmp_path / "mnist_expanded.pkl.gz", original)
    books = write_book_expanded(tmp_path / "books_expanded.pkl.gz", splits, seed=5)
    for path in (ours, books):
        assert len(data.load_data(path, verify=True)[0][0]) == 250
        note = data.check_hashes(data.find_source(path))
        assert "expanded set of" in note and str(original) in note and "verified" in note
    assert "expanded set of" in data.describe(ours)[0]

    (x, y), validation, test = data.load_data(ours, cache=False)
    x[7, 300] = 0.5 if x[7, 300] != 0.5 else 0.25          # one pixel of one image
    one_line_error("training examples are not exactly those of", data.load_data,
                   write_pkl(tmp_path / "bad.pkl.gz", ((x, y), validation, test)), verify=True)
    (x, y), validation, test = data.load_data(ours, cache=False)
    y[0] = (y[0] + 1) % 10                                   # one label
    one_line_error("training examples are not exactly", data.load_data,
                   write_pkl(tmp_path / "bad2.pkl.gz", ((x, y), validation, test)), verify=True)
    one_line_error("its validation split is not that of", data.load_data,
                   write_pkl(tmp_path / "bad3.pkl.gz", ((x, y), test, validation)), verify=True)
    one_line_error("50 training examples, not 5 x 50", data.load_data,   # a renamed copy, not expanded
                   write_pkl(tmp_path / "copy.pkl.gz", splits, protocol=4), verify=True)
    monkeypatch.setitem(data.HASHES["mnist"], data.PICKLE_NAME, "sha256:" + "0" * 64)
    one_line_error(f"{original}: SHA-256", data.load_data, ours, verify=True)   # the original must verify


def test_verify_without_an_original_says_so(tmp_path, pixels):
    (tmp_path / "alone").mkdir()
    pkl = write_pkl(tmp_path / "mnist.pkl.gz", book_splits(*pixels))
    out = data.write_expanded(tmp_path / "alone" / "mnist_expanded.pkl.gz", pkl, sizes=SIZES)
    one_line_error("no original to check its derivation against", data.load_data, out,
                   sizes=(250, 10, 10), verify=True)


def test_describe_synthetic(tmp_path, pixels):
    pkl = write_pkl(tmp_path / "mnist.pkl.gz", book_splits(*pixels))
    lines = data.describe(pkl, sizes=SIZES)
    assert len(lines) == 4 and str(pkl) in lines[0] and "not the published" in lines[0]
    assert lines[1].split()[:2] == ["training", "50"]


# ------------------------------------------------------------------ the real file

def test_real_mnist(monkeypatch, real_mnist):
    monkeypatch.setenv("NN3_DATA_DIR", str(real_mnist))   # isolated() moved us and unset it
    pkl = real_mnist / "mnist.pkl.gz"
    assert pkl.stat().st_size == 17_051_982
    splits = data.load_data(verify=True)
    for (x, y), n in zip(splits, (50_000, 10_000, 10_000)):
        assert x.shape == (n, 784) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert x.min() == 0.0 and x.max() == 255 / 256 and y.min() == 0 and y.max() == 9
    k = splits[2][0] * 256
    np.testing.assert_array_equal(k, np.round(k))      # the pixels are k/256
    assert "SHA-256 f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416 verified" in data.describe()[0]
