"""Corrupted and hostile stats directories (issue 6, "Corrupted and hostile data").

Every corruption gives a StatsFormatError naming the offending file and what is wrong,
both from ``GradientStats.load`` (in RAM and memory-mapped) and from ``direct-opt solve``
(one line, exit 1).  Nothing is unpickled or executed: the hostile payloads below create a
marker file if they ever run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from direct_opt import GradientStats
from direct_opt.cli import main
from direct_opt.errors import StatsFormatError

from . import _lib

MARKER = "pwned.txt"


class _Payload:
    """Unpickling this object writes a marker file (it must never happen)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path(self.path).write_text, ("unpickled!",))


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d: Path, m: dict) -> None:
    (d / "manifest.json").write_text(json.dumps(m))


def _edit_entry(d: Path, name: str, **fields) -> None:
    m = _manifest(d)
    m["arrays"][name].update(fields)
    _write_manifest(d, m)


# Each case: corrupt(d, outside) -> None; the error must name the file and say what is wrong.
def _truncate_data(d, outside):
    raw = (d / "G_flat.npy").read_bytes()
    (d / "G_flat.npy").write_bytes(raw[:-5])


def _truncate_header(d, outside):
    (d / "G_flat.npy").write_bytes((d / "G_flat.npy").read_bytes()[:30])


def _empty_file(d, outside):
    (d / "a_stiff.npy").write_bytes(b"")


def _padded(d, outside):
    with open(d / "losses.npy", "ab") as fh:
        fh.write(b"\0" * 8)


def _shape_mismatch(d, outside):
    _edit_entry(d, "a_stiff", shape=[49])


def _dtype_mismatch(d, outside):
    _edit_entry(d, "G_flat", dtype="<f8")


def _checksum_mismatch(d, outside):
    raw = bytearray((d / "eigvals.npy").read_bytes())
    raw[-1] ^= 0x01  # one bit of the last eigenvalue
    (d / "eigvals.npy").write_bytes(bytes(raw))


def _pickled_object_array(d, outside):
    arr = np.empty(3, dtype=object)
    arr[:] = [_Payload(str(d / MARKER))] * 3
    np.save(d / "losses.npy", arr, allow_pickle=True)  # the manifest still says float32


def _object_dtype_in_manifest(d, outside):
    arr = np.empty(50, dtype=object)
    arr[:] = [_Payload(str(d / MARKER))] * 50
    np.save(d / "losses.npy", arr, allow_pickle=True)
    _edit_entry(d, "losses", dtype="|O")


def _code_in_npy_header(d, outside):
    # a header whose dict is a Python expression with a side effect: must be parsed, not evaluated
    expr = f"__import__('pathlib').Path({str(d / MARKER)!r}).write_text('x')"
    header = ("{'descr': " + expr + ", 'fortran_order': False, 'shape': (50,), }").encode("latin1")
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 200
    (d / "losses.npy").write_bytes(body)


def _version_future(d, outside):
    m = _manifest(d)
    m["format_version"] = 99
    _write_manifest(d, m)


def _version_string(d, outside):
    m = _manifest(d)
    m["format_version"] = "1"
    _write_manifest(d, m)


def _version_missing(d, outside):
    m = _manifest(d)
    del m["format_version"]
    _write_manifest(d, m)


def _wrong_format_name(d, outside):
    m = _manifest(d)
    m["format"] = "someone.else"
    _write_manifest(d, m)


def _manifest_not_json(d, outside):
    (d / "manifest.json").write_text('{"format": "direct_opt.gradient_stats", ')


def _manifest_binary(d, outside):
    (d / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")


def _manifest_a_list(d, outside):
    (d / "manifest.json").write_text("[1, 2, 3]")


def _manifest_missing(d, outside):
    (d / "manifest.json").unlink()


def _array_file_missing(d, outside):
    (d / "G_stiff.npy").unlink()


def _malformed_entry(d, outside):
    _edit_entry(d, "a_stiff", shape="fifty")


def _unknown_array(d, outside):
    m = _manifest(d)
    m["arrays"]["os_system"] = dict(m["arrays"]["losses"])
    _write_manifest(d, m)


def _symlink_array_outside(d, outside):
    # the outside file is a byte-identical copy: only the location check can catch it
    shutil.copy(d / "G_flat.npy", outside / "G_flat.npy")
    (d / "G_flat.npy").unlink()
    os.symlink(outside / "G_flat.npy", d / "G_flat.npy")


def _symlink_manifest_outside(d, outside):
    shutil.copy(d / "manifest.json", outside / "manifest.json")
    (d / "manifest.json").unlink()
    os.symlink(outside / "manifest.json", d / "manifest.json")


def _path_traversal(d, outside):
    shutil.copy(d / "a_stiff.npy", outside / "a_stiff.npy")
    _edit_entry(d, "a_stiff", file=f"../{outside.name}/a_stiff.npy")


def _absolute_path(d, outside):
    shutil.copy(d / "a_stiff.npy", outside / "a_stiff.npy")
    _edit_entry(d, "a_stiff", file=str(outside / "a_stiff.npy"))


def _nan_with_valid_checksum(d, outside):
    _replace_consistently(d, "G_flat", lambda g: np.where(np.arange(g.size).reshape(g.shape) == 7, np.nan, g))


def _negative_cost_with_valid_checksum(d, outside):
    _replace_consistently(d, "a_stiff", lambda a: -a)


def _empty_pool_with_valid_checksum(d, outside):
    _replace_consistently(d, "G_flat", lambda g: g[:, :0])
    _replace_consistently(d, "a_stiff", lambda a: a[:0])


def _replace_consistently(d: Path, name: str, fn) -> None:
    """Rewrite array ``name`` with fn(array) and a manifest entry that matches it exactly."""
    from direct_opt.stats import write_npy_atomic

    arr = np.asarray(fn(np.load(d / f"{name}.npy")), dtype=np.float32)
    digest = write_npy_atomic(d / f"{name}.npy", arr)
    _edit_entry(d, name, shape=list(arr.shape), dtype=np.lib.format.dtype_to_descr(arr.dtype), sha256=digest)


CASES = {
    # name: (corrupt, the file the error names, what it says (regex), also caught with verify=False?)
    "truncated data": (_truncate_data, "{d}/G_flat.npy", "truncated", True),
    "truncated header": (_truncate_header, "{d}/G_flat.npy", "not a valid .npy", True),
    "empty file": (_empty_file, "{d}/a_stiff.npy", "not a valid .npy", True),
    "padded file": (_padded, "{d}/losses.npy", "truncated or padded", True),
    "manifest shape": (_shape_mismatch, "{d}/a_stiff.npy", r"holds shape \(50,\).*manifest says shape \(49,\)", True),
    "manifest dtype": (_dtype_mismatch, "{d}/G_flat.npy", "dtype float32, but the manifest says.*float64", True),
    "checksum": (_checksum_mismatch, "{d}/eigvals.npy", "SHA-256 checksum does not match", False),
    "pickled object array": (_pickled_object_array, "{d}/losses.npy", "pickled object array.*no pickle", True),
    "object dtype declared": (_object_dtype_in_manifest, "{d}/losses.npy", "object dtype.*no pickle", True),
    "code in npy header": (_code_in_npy_header, "{d}/losses.npy", "not a valid .npy", True),
    "format_version 99": (_version_future, "{d}/manifest.json", "format_version 99.*reads versions", True),
    "format_version '1'": (_version_string, "{d}/manifest.json", "format_version '1'", True),
    "format_version missing": (_version_missing, "{d}/manifest.json", "format_version None", True),
    "format name": (_wrong_format_name, "{d}/manifest.json", "does not describe direct_opt gradient stats", True),
    "manifest not JSON": (_manifest_not_json, "{d}/manifest.json", "not valid JSON", True),
    "manifest binary": (_manifest_binary, "{d}/manifest.json", "not valid JSON", True),
    "manifest a list": (_manifest_a_list, "{d}/manifest.json", "does not describe", True),
    "manifest missing": (_manifest_missing, "{d}/manifest.json", "is missing", True),
    "array file missing": (_array_file_missing, "{d}/G_stiff.npy", "is missing", True),
    "malformed entry": (_malformed_entry, "{d}/manifest.json", "malformed array entry", True),
    "unknown array name": (_unknown_array, "{d}/manifest.json", r"unknown array name\(s\) \['os_system'\]", True),
    "symlinked array": (_symlink_array_outside, "{d}/G_flat.npy", "outside the stats directory", True),
    "symlinked manifest": (_symlink_manifest_outside, "{d}/manifest.json", "outside the stats directory", True),
    "path traversal": (_path_traversal, "{d}/../elsewhere/a_stiff.npy", "outside the stats directory", True),
    "absolute path": (_absolute_path, "{outside}/a_stiff.npy", "outside the stats directory", True),
    "NaN inside": (_nan_with_valid_checksum, "G_flat", r"NaN/Inf \(first at index \(0, 7\)\)", True),
    "negative cost": (_negative_cost_with_valid_checksum, "a_stiff", "< 0", True),
    "empty pool": (_empty_pool_with_valid_checksum, "G_flat", "no columns", True),
}


@pytest.fixture()
def dirs(tmp_path):
    d = _lib.random_stats(n=50, seed=3).save(tmp_path / "stats")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    return d, outside


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_corruption_is_a_specific_error_naming_the_file(dirs, case, capsys):
    d, outside = dirs
    corrupt, template, what, without_checksum = CASES[case]
    corrupt(d, outside)
    named = template.format(d=d, outside=outside)
    for mmap, verify in ((False, True), (True, True)) + (((True, False),) if without_checksum else ()):
        if case in ("NaN inside", "negative cost") and mmap:
            continue  # memory-mapped loads skip value checks; SelectionProblem re-checks (below)
        with pytest.raises(StatsFormatError) as err:
            GradientStats.load(d, mmap=mmap, verify=verify)
        msg = str(err.value)
        assert named in msg, msg
        assert re.search(what, msg), msg
    # the command line: one line naming the file, exit 1, no traceback
    for extra in ([], ["--mmap"]):
        code = main(["solve", "--stats", str(d), "-k", "5", "--tau-rel", "5", *extra])
        out = capsys.readouterr()
        assert code == 1, (case, extra, out)
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("direct-opt: error:") and "Traceback" not in out.err
        assert named in lines[0]
    assert not (d / MARKER).exists()  # nothing was unpickled or executed


def test_intact_directory_loads_and_symlinked_directory_is_fine(dirs):
    """Control: the checks do not reject what is valid (a symlink to the whole directory is fine)."""
    d, outside = dirs
    ref = GradientStats.load(d).checksum()
    os.symlink(d, outside / "link")
    assert GradientStats.load(outside / "link", mmap=True).checksum() == ref
