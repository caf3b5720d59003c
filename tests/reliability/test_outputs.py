"""Class 2 of issue 17: outputs never destroy what is there.

Regular files only (devices, FIFOs, symlinks, directories refused before any work), ``--out -``
writes to stdout, a closed stdout pipe never stops the file from being written, files get the
usual 0666 & ~umask mode, and ``GradientStats.save`` over an existing directory is all or
nothing: a disk full at *any* write, or a failed swap, leaves the old stats loadable.
"""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import direct_opt.output as output
import direct_opt.stats as stats_mod
from direct_opt import GradientStats
from direct_opt.cli import main
from direct_opt.errors import OutputPathError

from . import _lib

MODE = 0o666 & ~output._UMASK


def test_non_regular_targets_are_refused_and_left_alone(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "real").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "dir").mkdir()
    for target, kind in (("/dev/null", "character device"), (tmp_path / "fifo", "FIFO"),
                         (tmp_path / "link", "symbolic link"), (tmp_path / "dir", "directory")):
        for attempt in (lambda: output.check_output_file(str(target)), lambda: output.write_output(Path(target), "x"),
                        lambda: output.write_text_atomic(Path(target), "x")):
            with pytest.raises(OutputPathError, match=kind):
                attempt()
    assert (tmp_path / "fifo").is_fifo() and (tmp_path / "link").is_symlink() and (tmp_path / "real").read_text() == "keep"
    assert Path("/dev/null").is_char_device()
    for bad in ("", "  ", "a\x00b"):
        with pytest.raises(OutputPathError):
            output.check_output_file(bad)
    with pytest.raises(OutputPathError, match="standard output"):
        output.check_output_file("-")
    assert output.check_output_file("-", allow_stdout=True) == output.STDOUT


def test_cli_outputs_get_the_usual_mode_and_out_dash_writes_json_to_stdout(tmp_path):
    stats = _lib.random_stats(n=40, seed=1).save(tmp_path / "stats")
    base = ["--stats", str(stats), "-k", "5", "--tau-rel", "1"]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert main(["solve", *base, "--out", "-"]) == 0
    rec = json.loads(out.getvalue())  # stdout holds the JSON only; the summary went to stderr
    assert len(rec["result"]["indices"]) == 5 and "status=" in err.getvalue()
    with redirect_stdout(io.StringIO()):
        assert main(["solve", *base, "--out", str(tmp_path / "sel.json")]) == 0
        assert main(["compare", *base, "--backends", "greedy,random", "--out", str(tmp_path / "cmp" / "c.json"),
                     "--plot", str(tmp_path / "cmp" / "c.png")]) == 0
    for name in ("sel.json", "cmp/c.json", "cmp/c.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == MODE, name
    assert (tmp_path / "cmp/c.png").read_bytes()[:4] == b"\x89PNG"
    from direct_opt.evaluate import write_json_atomic  # the harness's writer (was 0600)

    write_json_atomic(tmp_path / "h.json", {"a": 1})
    assert (tmp_path / "h.json").stat().st_mode & 0o777 == MODE


def test_a_closed_stdout_pipe_does_not_stop_the_output_file(tmp_path):
    stats = _lib.random_stats(n=40, seed=2).save(tmp_path / "stats")
    out = tmp_path / "sel.json"
    cmd = (f"{sys.executable} -m direct_opt.cli solve --stats {stats} -k 5 --tau-rel 1 --out {out} | true; "
           f"{sys.executable} -m direct_opt.cli compare --stats {stats} -k 5 --tau-rel 1 --backends greedy "
           f"--out {tmp_path / 'c.json'} | head -c 1 >/dev/null")
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=_lib.child_env(PYTHONUNBUFFERED="1"),
                       timeout=300)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
    assert len(json.loads(out.read_text())["result"]["indices"]) == 5
    assert json.loads((tmp_path / "c.json").read_text())["results"]["greedy"]["feasible"]


class _DiskFull:
    """Counts writes through direct_opt.output's temp files; raises ENOSPC at write number ``at``."""

    def __init__(self, at: int | None) -> None:
        self.at, self.count = at, 0
        self.real = os.fdopen

    def fdopen(self, fd, mode="r", *a, **k):
        fh = self.real(fd, mode, *a, **k)
        outer = self

        class Handle:
            def __enter__(self):
                fh.__enter__()
                return self

            def __exit__(self, *exc):
                return fh.__exit__(*exc)

            def write(self, data):
                outer.count += 1
                if outer.at is not None and outer.count == outer.at:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return fh.write(data)

            def __getattr__(self, name):
                return getattr(fh, name)

        return Handle()


def _stats(seed: int) -> GradientStats:
    return _lib.random_stats(n=30, r=4, k=6, seed=seed)


def test_save_over_existing_stats_is_all_or_nothing_under_disk_full_at_every_write(tmp_path, monkeypatch):
    d = tmp_path / "stats"
    old = _stats(0)
    old.save(d)
    old_sum = GradientStats.load(d).checksum()
    counter = _DiskFull(None)
    monkeypatch.setattr(output.os, "fdopen", counter.fdopen)
    _stats(1).save(tmp_path / "probe")
    total = counter.count
    assert total >= 6  # every array and the manifest
    for at in range(1, total + 1):
        monkeypatch.setattr(output.os, "fdopen", _DiskFull(at).fdopen)
        with pytest.raises(OSError) as info:
            _stats(1).save(d)
        assert info.value.errno == errno.ENOSPC
        assert GradientStats.load(d).checksum() == old_sum, f"old stats damaged by a failure at write {at}"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["probe", "stats"]  # no temp directory left
    monkeypatch.setattr(output.os, "fdopen", os.fdopen)

    def failing_swap(a, b):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(stats_mod, "_exchange", failing_swap)
    with pytest.raises(OSError):
        _stats(1).save(d)
    assert GradientStats.load(d).checksum() == old_sum
    monkeypatch.undo()
    _stats(1).save(d)  # and without faults the new stats replace the old ones
    assert GradientStats.load(d).checksum() == _stats(1).checksum()
    assert (d / "manifest.json").stat().st_mode & 0o777 == MODE and d.stat().st_mode & 0o777 == 0o777 & ~output._UMASK


def test_save_refuses_to_replace_a_directory_that_holds_other_files(tmp_path):
    d = tmp_path / "stats"
    _stats(0).save(d)
    (d / "notes.txt").write_text("mine")
    with pytest.raises(OutputPathError, match="notes.txt"):
        _stats(1).save(d)
    assert (d / "notes.txt").read_text() == "mine" and GradientStats.load(d).checksum() == _stats(0).checksum()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="not a directory"):
        _stats(1).save(tmp_path / "file")
    real = tmp_path / "real"
    _stats(0).save(real)
    (tmp_path / "link").symlink_to(real)
    _stats(1).save(tmp_path / "link")  # a link to a stats directory stays a link
    assert (tmp_path / "link").is_symlink() and GradientStats.load(real).checksum() == _stats(1).checksum()
    assert np.array_equal(GradientStats.load(tmp_path / "link").G_flat, _stats(1).G_flat)
