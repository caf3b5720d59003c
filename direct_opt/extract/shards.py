"""Incremental, resumable on-disk output of an extraction run (``ExtractConfig.out_dir``).

Layout of ``out_dir``::

    .lock                  pid of the writer (O_CREAT|O_EXCL); stale locks of dead pids are taken over
    progress.json          format, run header (config, model/data fingerprints, version), progress
    curvature/*.npy        eigvals, basis (V or U), val_mean, val_losses; curvature/done.json last
    shards/pool_NNNNNN.npy one float32 (B, 2 + k) array per pool batch: [loss, |g|^2, z_1..z_k]
    stats/                 the final GradientStats (GradientStats.save)

Every file is written to a temporary name and renamed into place (``os.replace``), so a
killed run leaves only whole files; a re-launch with the same arguments skips them.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import ExtractionError, OutputLockedError
from ..stats import write_error, write_npy_atomic, write_text_atomic

RUN_FORMAT = "direct_opt.extract_run"
RUN_VERSION = 1


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class OutputDir:
    """Lock, validate and read/write the pieces of one run directory (a context manager)."""

    def __init__(self, path: str | os.PathLike, header: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.header = json.loads(json.dumps(header, sort_keys=True, default=str))
        self._locked = False

    # ------------------------------------------------------------------ lock
    def _lock_path(self) -> Path:
        return self.path / ".lock"

    def acquire(self) -> None:
        """Take the lock or raise OutputLockedError (stale locks of dead pids are taken over)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(exc, self.path, "create the output directory") from exc
        lock = self._lock_path()
        for _ in range(3):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(lock.read_text().strip() or "-1")
                except (OSError, ValueError):
                    pid = -1
                if pid > 0 and not _pid_alive(pid):
                    try:
                        lock.unlink()
                    except FileNotFoundError:
                        pass
                    continue
                raise OutputLockedError(
                    f"{self.path} is locked by process {pid if pid > 0 else '(unknown)'} ({lock}); "
                    "another extraction is writing there. Wait for it, use another out_dir, or delete "
                    "the lock file if that process is gone."
                ) from None
            except OSError as exc:
                raise write_error(exc, lock, "create the lock file") from exc
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            self._locked = True
            return
        raise OutputLockedError(f"could not take the lock {lock}; retry.")

    def release(self) -> None:
        """Remove our lock file (only if it still holds our pid)."""
        if not self._locked:
            return
        self._locked = False
        lock = self._lock_path()
        try:
            if lock.read_text().strip() == str(os.getpid()):
                lock.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> "OutputDir":
        self.acquire()
        try:
            self._check_or_write_header()
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # --------------------------------------------------------------- header
    def _progress_path(self) -> Path:
        return self.path / "progress.json"

    def _check_or_write_header(self) -> None:
        p = self._progress_path()
        if p.is_file():
            try:
                old = json.loads(p.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ExtractionError(f"{p} is corrupted ({exc}); delete {self.path} and re-run.") from exc
            if old.get("format") != RUN_FORMAT or old.get("version") != RUN_VERSION:
                raise ExtractionError(f"{self.path} is not a direct_opt extraction directory (version {RUN_VERSION}).")
            if old.get("header") != self.header:
                diff = sorted(
                    k for k in set(old.get("header", {})) | set(self.header)
                    if old.get("header", {}).get(k) != self.header.get(k)
                )
                raise ExtractionError(
                    f"{self.path} holds a run with a different configuration/model/data (differs in: "
                    f"{', '.join(diff)}). Resume with exactly the same arguments, or use a new out_dir."
                )
        else:
            (self.path / "shards").mkdir(exist_ok=True)
            self.write_progress(completed=0, done=False)

    def write_progress(self, **fields: Any) -> None:
        """Rewrite progress.json atomically with the header and ``fields``."""
        doc = {"format": RUN_FORMAT, "version": RUN_VERSION, "header": self.header, **fields}
        write_text_atomic(self._progress_path(), json.dumps(doc, indent=2, sort_keys=True, default=str))

    # ------------------------------------------------------------ curvature
    def save_curvature(self, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> None:
        """Write the curvature arrays, then ``done.json`` (the completion marker) last."""
        d = self.path / "curvature"
        d.mkdir(exist_ok=True)
        for name, arr in arrays.items():
            write_npy_atomic(d / f"{name}.npy", np.asarray(arr))
        write_text_atomic(d / "done.json", json.dumps({"arrays": sorted(arrays), **info}, sort_keys=True, default=str))

    def load_curvature(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The saved curvature (arrays, info), or None if the validation pass never finished."""
        d = self.path / "curvature"
        marker = d / "done.json"
        if not marker.is_file():
            return None
        info = json.loads(marker.read_text())
        arrays = {name: np.load(d / f"{name}.npy", allow_pickle=False) for name in info.pop("arrays")}
        return arrays, info  # the info as first saved (a resumed run's provenance matches a fresh one's)

    # --------------------------------------------------------------- shards
    def shard_path(self, b: int) -> Path:
        return self.path / "shards" / f"pool_{b:06d}.npy"

    def has_shard(self, b: int) -> bool:
        return self.shard_path(b).is_file()

    def save_shard(self, b: int, arr: np.ndarray) -> None:
        """Write pool batch ``b`` ((B, 2 + k) float32) atomically."""
        write_npy_atomic(self.shard_path(b), np.ascontiguousarray(arr, dtype=np.float32))

    def load_shard(self, b: int, rows: int, cols: int) -> np.ndarray:
        """Read pool batch ``b`` and check its shape."""
        p = self.shard_path(b)
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ExtractionError(f"{p} is unreadable ({exc}); delete it and re-run to recompute it.") from exc
        if arr.shape != (rows, cols) or arr.dtype != np.float32:
            raise ExtractionError(f"{p} has shape {arr.shape} {arr.dtype}; expected ({rows}, {cols}) float32. "
                                  "Delete it and re-run.")
        return arr
