"""The one way direct_opt writes files, and the checks of an output path made before any work.

Every file a command writes (selection and comparison JSON, plots, evaluation results, stats
arrays and manifests) goes through :func:`atomic_file`: a temp file beside the target,
fsync, rename.  So a crash or a full disk never leaves a half-written file, and the new
file gets the usual mode ``0o666 & ~umask`` (0644 under the common umask 022), not
``mkstemp``'s private 0600.  Only regular files are ever replaced: a device node, FIFO,
socket, symlink or directory at the target path is refused with :class:`OutputPathError`
(run as root, ``--out /dev/full`` would otherwise replace the system's ``/dev/full``).

:func:`check_output_file` / :func:`check_output_dir` run in each command's validation pass,
before any work, so a bad ``--out`` or ``--plot`` fails in milliseconds instead of after
the solve.  ``--out -`` means standard output where a command allows it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import OutputPathError

STDOUT = "-"
_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it) ...
os.umask(_UMASK)  # ... and restored


def write_error(exc: OSError, path: Path, what: str = "write") -> OSError:
    """The same OSError type/errno with a message naming ``path`` and what to do."""
    msg = (
        f"could not {what} {path}: {exc.strerror or exc}. Files completed before it are intact; free disk "
        "space or fix permissions, then retry (an extraction re-run with the same arguments resumes)."
    )
    return type(exc)(exc.errno, msg) if exc.errno is not None else type(exc)(msg)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _check_text(path: Any, flag: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise OutputPathError(f"{flag} must be a path, got {type(path).__name__}.")
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text.strip():
        raise OutputPathError(f"{flag} is empty; give a file name (e.g. {flag} result.json).")
    if "\x00" in text:
        raise OutputPathError(f"{flag} {text!r} contains a NUL byte, which no file name can hold.")
    return text


def refuse_non_regular(path: Path, flag: str = "output") -> None:
    """Raise OutputPathError if ``path`` exists and is not a regular file (symlinks included)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputPathError(f"{flag} {path}: cannot inspect it ({exc.strerror or exc}).") from None
    if not stat.S_ISREG(mode):
        raise OutputPathError(
            f"{flag} {path} is {_kind(mode)}; direct_opt writes regular files only and will not replace it. "
            "Give the path of a new or regular file."
        )


def _writable_ancestor(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` must be a directory in which a file can be created."""
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link: mkdir would fail later
            raise OutputPathError(f"{flag} {path}: {parent} is a broken symbolic link.")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{flag} {path}: {parent} is not a directory, so nothing can be written below it.")
    try:  # a real probe: permission bits, read-only mounts and root alike
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".direct_opt-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"{flag} {path}: cannot create files in {parent} ({exc.strerror or exc}).") from None


def check_output_file(path: Any, flag: str = "--out", *, allow_stdout: bool = False) -> Path | str:
    """Validate an output file path before any work; returns the Path (or :data:`STDOUT`).

    Refused: empty names, NUL bytes, ``-`` where stdout makes no sense, an existing
    non-regular file (device, FIFO, socket, symlink, directory), a path below a file, and a
    directory where no file can be created.
    """
    text = _check_text(path, flag)
    if text == STDOUT:
        if allow_stdout:
            return STDOUT
        raise OutputPathError(f"{flag} - (standard output) is not supported here; give a file name.")
    p = Path(text)
    refuse_non_regular(p, flag)
    _writable_ancestor(p, flag)
    return p


def check_output_dir(path: Any, flag: str = "--out") -> Path:
    """Validate an output directory before any work: empty/NUL names, an existing
    non-directory, and a directory (or nearest existing ancestor) where nothing can be
    created are refused.  Nothing is created."""
    p = Path(_check_text(path, flag))
    if p.exists() or p.is_symlink():
        if not p.is_dir():
            raise OutputPathError(f"{flag} {p} exists and is not a directory; give a directory path.")
        _writable_ancestor(p / "x", flag)
    else:
        _writable_ancestor(p, flag)
    return p


@contextlib.contextmanager
def atomic_file(path: Path, mode: str) -> Iterator[tuple[Any, Path]]:
    """Yield (file handle, temp path) of a temp file beside ``path``; on success it is fsynced
    and renamed onto ``path``; on any failure it is removed and an OSError names ``path``.
    An existing non-regular file at ``path`` is refused (OutputPathError) before anything is written."""
    path = Path(path)
    refuse_non_regular(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode) as fh:
            yield fh, Path(tmp)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(exc, path) from exc
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file + fsync + rename."""
    with atomic_file(Path(path), "w") as (fh, _):
        fh.write(text)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file + fsync + rename."""
    with atomic_file(Path(path), "wb") as (fh, _):
        fh.write(data)


def write_output(target: Path | str, data: str | bytes, flag: str = "--out") -> None:
    """Write a command's output: to stdout for :data:`STDOUT`, else atomically to the regular file
    ``target`` (its missing parent directories are created)."""
    if target == STDOUT:
        if isinstance(data, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data if data.endswith("\n") else data + "\n")
        sys.stdout.flush()
        return
    path = Path(target)
    refuse_non_regular(path, flag)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, path.parent, "create the directory") from exc
    (write_bytes_atomic if isinstance(data, bytes) else write_text_atomic)(path, data)


class PipeSafeStream:
    """A text stream wrapper that turns a broken pipe into silence: once the reader is gone
    (``direct-opt solve ... | head``), further output is discarded instead of raising, so the
    command still finishes its real work, its output files included."""

    def __init__(self, stream: Any) -> None:
        self._stream, self.broken = stream, False

    def _silence(self) -> None:
        self.broken = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())  # so the interpreter's last flush is quiet too
            os.close(devnull)

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def pipe_safe_stdout() -> Iterator[None]:
    """Install :class:`PipeSafeStream` on ``sys.stdout`` for the duration of a command."""
    saved = sys.stdout
    sys.stdout = PipeSafeStream(saved)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = saved
