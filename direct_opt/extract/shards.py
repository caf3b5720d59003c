"""Incremental, resumable on-disk output of an extraction run (``ExtractConfig.out_dir``).

Layout of ``out_dir``::

    .lock                  pid of the writer (O_CREAT|O_EXCL); stale locks of dead pids are taken over
                           (under an flock of the directory, so two restarts cannot both take it)
    progress.json          format, run header (config, model/data fingerprints, version), progress
    curvature/*.npy        eigvals, basis (V or U), val_mean, val_losses; curvature/done.json last
                           (array names and their SHA-256)
    shards/pool_NNNNNN.npy one float32 (B, 2 + k) array per pool batch: [loss, |g|^2, z_1..z_k]
    shard_sha256/pool_NNNNNN.json  {"sha256", "shape", "dtype"} of that shard, written after it
    stats/                 the final GradientStats (GradientStats.save)

Every file is written to a temporary name and renamed into place (``os.replace``), so a
killed run leaves only whole files; a re-launch with the same arguments skips them.  A
shard is reused only if its file matches the SHA-256 recorded when it was written; a shard
that is unreadable, has no record (killed between the two writes) or does not match (changed
on disk since) is recomputed, with a warning on the ``direct_opt.extract`` logger (stderr
by default).  Curvature files that do not match ``done.json`` raise ExtractionError naming
the file and what to delete.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl: the takeover is then unguarded
    fcntl = None  # type: ignore[assignment]

from ..errors import ExtractionError, OutputLockedError
from ..stats import write_error, write_npy_atomic, write_text_atomic

RUN_FORMAT = "direct_opt.extract_run"
RUN_VERSION = 1
log = logging.getLogger("direct_opt.extract")


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
        with self._guard():
            self._take_lock(lock)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Hold an exclusive flock on the run directory while ``.lock`` is checked, taken or removed.

        Without it two processes restarting at once could both see a dead pid in ``.lock``:
        one deletes it and creates its own lock, then the other deletes *that* one and
        creates a second.  Under the guard the second process sees the first's live pid.
        The kernel drops a flock when its holder dies, so the guard itself is never stale;
        it creates no file.  Where directories cannot be flock'ed (e.g. NFS) the takeover
        runs unguarded, as before.
        """
        fd = None
        if fcntl is not None:
            try:
                fd = os.open(self.path, os.O_RDONLY)
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                log.info("cannot flock %s (%s); stale-lock takeover unguarded.", self.path, exc.strerror or exc)
                if fd is not None:
                    os.close(fd)
                fd = None
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)  # releases the flock

    def _take_lock(self, lock: Path) -> None:
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
        with self._guard():
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
        """Write the curvature arrays, then ``done.json`` (the completion marker, with their SHA-256) last."""
        d = self.path / "curvature"
        d.mkdir(exist_ok=True)
        sums = {name: write_npy_atomic(d / f"{name}.npy", np.asarray(arr)) for name, arr in arrays.items()}
        write_text_atomic(d / "done.json", json.dumps({"arrays": sorted(arrays), "sha256": sums, **info},
                                                      sort_keys=True, default=str))

    def _curvature_error(self, path: Path, what: str) -> ExtractionError:
        d = self.path / "curvature"
        also = ""
        if (self.header.get("config") or {}).get("curvature") == "hessian-lanczos":
            also = (f" and {self.path / 'shards'} (the pool sketches were projected on these eigenvectors, "
                    "so they are recomputed too)")
        return ExtractionError(
            f"{path} is corrupted ({what}); the saved curvature of this run cannot be reused. Delete {d}{also} "
            "and re-run with the same arguments to recompute it."
        )

    def load_curvature(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The saved curvature (arrays, info), or None if the validation pass never finished.

        Raises ExtractionError naming the file if ``done.json`` or an array is unreadable, missing
        or differs from the SHA-256 recorded in ``done.json``.
        """
        d = self.path / "curvature"
        marker = d / "done.json"
        if not marker.is_file():
            return None
        try:
            info = json.loads(marker.read_bytes())
        except (OSError, ValueError) as exc:
            raise self._curvature_error(marker, f"not readable JSON: {exc}") from exc
        names = info.pop("arrays", None) if isinstance(info, dict) else None
        sums = info.pop("sha256", {}) if isinstance(info, dict) else None  # absent in runs of older versions
        if (not isinstance(names, list) or not all(isinstance(n, str) and n.isidentifier() for n in names)
                or not isinstance(sums, dict)):
            raise self._curvature_error(marker, "expected an object with an 'arrays' list of names")
        arrays = {}
        for name in names:
            p = d / f"{name}.npy"
            try:
                raw = p.read_bytes()
            except OSError as exc:
                raise self._curvature_error(p, f"cannot read it: {exc.strerror or exc}") from exc
            if name in sums and hashlib.sha256(raw).hexdigest() != sums[name]:
                raise self._curvature_error(p, f"its SHA-256 differs from the one recorded in {marker.name}")
            try:
                arrays[name] = np.load(io.BytesIO(raw), allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise self._curvature_error(p, f"not a valid .npy file: {exc}") from exc
        return arrays, info  # the info as first saved (a resumed run's provenance matches a fresh one's)

    # --------------------------------------------------------------- shards
    def shard_path(self, b: int) -> Path:
        return self.path / "shards" / f"pool_{b:06d}.npy"

    def shard_sum_path(self, b: int) -> Path:
        return self.path / "shard_sha256" / f"pool_{b:06d}.json"

    def has_shard(self, b: int) -> bool:
        """Shard ``b`` and its checksum record are on disk (not verified: see :meth:`reuse_shard`)."""
        return self.shard_path(b).is_file() and self.shard_sum_path(b).is_file()

    def save_shard(self, b: int, arr: np.ndarray) -> None:
        """Write pool batch ``b`` ((B, 2 + k) float32) atomically, then its SHA-256 record."""
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        sums = self.shard_sum_path(b)
        sums.parent.mkdir(exist_ok=True)
        sums.unlink(missing_ok=True)  # a kill before the new record leaves no record, not an old one
        digest = write_npy_atomic(self.shard_path(b), arr)
        write_text_atomic(sums, json.dumps({"sha256": digest, "shape": list(arr.shape), "dtype": "float32"}))

    def _read_shard(self, b: int, rows: int, cols: int) -> np.ndarray | str:
        """Shard ``b`` checked against its SHA-256 record and shape, or what is wrong with it."""
        p, sums = self.shard_path(b), self.shard_sum_path(b)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            return f"{p} is unreadable ({exc.strerror or exc})"
        try:
            want = json.loads(sums.read_bytes())["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"{p} has no valid checksum record {sums} ({type(exc).__name__})"
        if hashlib.sha256(raw).hexdigest() != want:
            return f"{p} does not match the SHA-256 recorded in {sums} when it was written (changed on disk since)"
        try:
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            return f"{p} is not a valid .npy file ({exc})"
        if arr.shape != (rows, cols) or arr.dtype != np.float32:
            return f"{p} has shape {arr.shape} {arr.dtype}; expected ({rows}, {cols}) float32"
        return arr

    def load_shard(self, b: int, rows: int, cols: int) -> np.ndarray:
        """Read pool batch ``b`` ((rows, cols) float32), checked against its SHA-256 record.

        Raises ExtractionError naming the file if it is unreadable, unrecorded, changed or misshapen.
        """
        got = self._read_shard(b, rows, cols)
        if isinstance(got, str):
            raise ExtractionError(f"{got}; delete it and re-run with the same arguments to recompute it.")
        return got

    def reuse_shard(self, b: int, rows: int, cols: int) -> np.ndarray | None:
        """Shard ``b`` if it is on disk and intact, else None (a bad one is logged, to be recomputed)."""
        if not self.shard_path(b).is_file():
            return None
        got = self._read_shard(b, rows, cols)
        if isinstance(got, str):
            log.warning("recomputing pool batch %d: %s.", b, got)
            return None
        return got
