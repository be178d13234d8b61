"""Bad corpus inputs (issue 9): special files in folders and on the command line, and files
whose shape (no newline for megabytes) used to cost memory far beyond their size."""

import errno
import io
import json
import os
import random
import signal
import subprocess
import sys
import tracemalloc
from contextlib import contextmanager

import pytest

import plmlab.data.corpus as corpus
from plmlab.data import read_corpus
from plmlab.errors import PlmlabError


@contextmanager
def deadline(seconds=20):
    """Fail (instead of hanging the suite) if the body blocks, as opening a FIFO does."""
    def expired(signum, frame):
        raise AssertionError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _folder_with_specials(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("Real text here. And more.")
    os.mkfifo(folder / "pipe.txt")
    (folder / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    (folder / "link.md").symlink_to(folder / "a.txt")  # a working symlink is read
    return folder


def test_folder_skips_fifo_and_broken_symlink_with_one_warning_each(tmp_path, capsys):
    folder = _folder_with_specials(tmp_path)
    with deadline():
        docs = read_corpus([str(folder)])
    assert docs == [["Real text here.", "And more."]] * 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("plmlab: skipping ") and "dangling.txt: a broken symlink" in lines[0]
    assert "pipe.txt: a named pipe (FIFO), not a regular file" in lines[1]


@pytest.mark.parametrize("make, kind", [
    (lambda p: os.mkfifo(p) or p, "named pipe"),
    (lambda p: "/dev/zero", "device"),
    (lambda p: "/dev/null", "device"),
    (lambda p: p.symlink_to(p.parent / "nowhere") or p, "broken symlink"),
])
def test_special_path_given_directly_says_what_it_is(tmp_path, make, kind):
    path = make(tmp_path / "given.txt")
    with deadline(), pytest.raises(PlmlabError) as info:
        read_corpus([str(path)])
    message = str(info.value)
    assert f"corpus path {path} is a {kind}" in message and "not a regular file" in message
    assert "not found" not in message and "\n" not in message


def test_unreadable_file_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "locked.txt"
    path.write_text("Secret. Text.")

    def denied(p, follow_symlinks=True):  # chmod 0 does not stop root, who runs some CI
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(corpus, "open_regular", denied)
    with pytest.raises(PlmlabError, match="^cannot read corpus file .*locked.txt: Permission denied$"):
        read_corpus([str(path)])

    class FailingDisk(io.BytesIO):
        def read(self, size=-1):
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(corpus, "open_regular", lambda p, follow_symlinks=True: FailingDisk())
    with pytest.raises(PlmlabError, match="^cannot read corpus file .*locked.txt: Input/output error$"):
        read_corpus([str(path)])


def test_chunked_reading_matches_whole_file_reading(tmp_path, monkeypatch):
    """BOM, CRLF, multi-byte characters and blank lines cut by any read size give the same text."""
    rng = random.Random(0)
    alphabet = ["a", "B", " ", ".", "\n", "\r\n", "\r", "\n\n", " \n \n", "é", "你", "🙂", "Dr. ", "x? "]
    path = tmp_path / "t.txt"
    for _ in range(60):
        data = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))).encode()
        path.write_bytes(b"\xef\xbb\xbf" + data if rng.random() < 0.3 else data)
        results = []
        for size in (1, 2, 3, 7, 1 << 20):
            monkeypatch.setattr(corpus, "CHUNK_BYTES", size)
            try:
                results.append([read_corpus([str(path)], doc_sep=sep) for sep in ("file", "blank")])
            except PlmlabError as e:
                results.append(str(e))
        assert all(r == results[-1] for r in results), data


@pytest.mark.parametrize("size", [1, 2, 5])
def test_bad_byte_offset_with_small_reads(tmp_path, monkeypatch, size):
    monkeypatch.setattr(corpus, "CHUNK_BYTES", size)
    path = tmp_path / "bad.txt"
    data = b"\xef\xbb\xbf" + "Grüße 你好 ".encode() + b"\xe4\xff tail"
    path.write_bytes(data)
    offset = data.index(b"\xe4\xff")
    with pytest.raises(PlmlabError, match=f"invalid UTF-8 byte 0xe4 at byte offset {offset}"):
        read_corpus([str(path)])


def test_jsonl_read_in_small_pieces(tmp_path, monkeypatch):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "Eins. Zwei."}) + "\r\n\r\n" + json.dumps({"text": "Drei 你好。"}) + "\n")
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 3)
    assert read_corpus([str(path)]) == [["Eins.", "Zwei."], ["Drei 你好。"]]
    path.write_text('{"text": "ok."}\n' + "[" * 100_000 + "\n")
    with pytest.raises(PlmlabError, match="line 2: invalid JSON"):
        read_corpus([str(path)])


def test_file_without_newlines_is_streamed_in_bounded_memory(tmp_path):
    rng = random.Random(0)
    words = "alpha beta Gamma delta model token".split()
    path = tmp_path / "one-line.txt"
    path.write_text(" ".join(rng.choice(words) for _ in range(500_000)))  # ~3 MB, no newline, no "."
    size = path.stat().st_size
    tracemalloc.start()
    try:
        docs = read_corpus([str(path)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The documents themselves take about `size`; reading the file whole took 13x.
    assert peak < 2.5 * size, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"
    assert max(len(s) for doc in docs for s in doc) <= corpus.MAX_PARAGRAPH_CHARS
    assert len(docs) >= size // corpus.MAX_PARAGRAPH_CHARS  # cut into documents: enough for a split
    assert " ".join(s for doc in docs for s in doc) == path.read_text()  # no text lost at the cuts


def test_cut_without_any_whitespace_and_jsonl_long_text(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "MAX_PARAGRAPH_CHARS", 1000)
    (tmp_path / "x.txt").write_text("x" * 2500)
    assert read_corpus([str(tmp_path / "x.txt")], doc_sep="blank") == [["x" * 1000, "x" * 1000, "x" * 500]]
    (tmp_path / "y.jsonl").write_text(json.dumps({"text": "word " * 500}) + "\n")
    (doc,) = read_corpus([str(tmp_path / "y.jsonl")])
    assert max(map(len, doc)) <= 1000 and " ".join(doc) == ("word " * 500).strip()


def test_cli_names_the_fifo(tmp_path):
    """End to end: `plmlab tokenizer train --corpus FIFO` answers at once, in one line, exit 2."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    out = subprocess.run([sys.executable, "-m", "plmlab", "tokenizer", "train", "--style", "gpt2",
                          "--corpus", str(fifo), "--out", str(tmp_path / "tok")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == f"plmlab: error: corpus path {fifo} is a named pipe (FIFO), not a regular file or a folder"
