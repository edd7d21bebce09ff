"""Atomic outputs: every file m3cvcav writes goes to a hidden temporary name beside its destination and is renamed into
place only when complete, so an error, Ctrl-C, SIGTERM or SIGHUP never leaves a half file under the user's name.

Temporary files are created with the usual permissions (``0666 & ~umask``, as ``open()`` and FFmpeg give), not
``mkstemp``'s private ``0600``; a folder (for ``%04d`` image sequences) gets ``0777 & ~umask`` and its files are moved
into the destination folder on commit. Anything still uncommitted when the interpreter exits is removed.
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import M3cvError, OutputError

_LIVE: set[Path] = set()  # temporary paths neither committed nor aborted


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    _LIVE.discard(path)


@atexit.register
def _remove_leftovers() -> None:
    for path in list(_LIVE):
        _remove(path)


class AtomicPath:
    """A destination written through a temporary path: a file (``folder=False``) or a folder whose files are moved
    beside the destination (``folder=True``, for image sequences). ``commit()`` renames, ``abort()`` removes."""

    def __init__(self, dst: str | os.PathLike, *, folder: bool = False):
        self.path = Path(dst)
        self.folder = folder
        parent = self.path.parent
        for _ in range(100):
            # The extension is kept last so that tools guessing the format from the name (PyAV) see the real one.
            stem = self.path.stem.replace("%", "")  # no printf pattern in a folder name (FFmpeg's image2 reads it)
            tmp = parent / f".{stem}.{secrets.token_hex(4)}.part{self.path.suffix}"
            try:
                if folder:
                    os.mkdir(tmp, 0o777)  # the umask applies, as for any folder
                else:
                    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                continue
            except OSError as err:
                raise OutputError(f"cannot write {self.path}: {err.strerror}; check the folder's permissions") from None
        else:  # pragma: no cover - 100 collisions of 32 random bits
            raise OutputError(f"cannot create a temporary file beside {self.path}: clean up .*.part files there")
        self.tmp = tmp
        _LIVE.add(tmp)

    def open(self) -> BinaryIO:
        """The temporary file, opened for binary writing (not for folders)."""
        return open(self.tmp, "wb")

    def commit(self) -> None:
        """Move the finished output into place (a folder's files into the destination folder)."""
        try:
            if self.folder:
                for name in sorted(os.listdir(self.tmp)):
                    os.replace(self.tmp / name, self.path.parent / name)
                self.tmp.rmdir()
            else:
                os.replace(self.tmp, self.path)
        except OSError as err:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {err.strerror}; check the folder and free space") from None
        _LIVE.discard(self.tmp)

    def abort(self) -> None:
        """Remove everything written; the destination is left as it was."""
        _remove(self.tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a small file whole, atomically (caches, resumable chunks): the folder is created, the data synced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = AtomicPath(path)
    try:
        with out.open() as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        out.abort()
        raise
    out.commit()


def check_output(dst: str, overwrite: bool | None, flag: str = "-y") -> None:
    """FFmpeg's -y/-n: refuse to overwrite an existing file unless ``overwrite`` is True (``flag`` names the option
    in the caller's words: ``-y`` on the command line, ``overwrite=True`` in the API). ``-`` and ``%d`` patterns
    (many files) are not checked."""
    if dst == "-" or "%" in Path(dst).name:
        return
    path = Path(dst)
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} already exists: pass {flag} to overwrite it (or choose another name)")
    if not path.parent.exists():
        raise OutputError(f"output folder {path.parent} does not exist: create it first")


@contextlib.contextmanager
def output_errors(dst: Any) -> Iterator[None]:
    """Turn an OS error of an output (a full disk, a lost pipe reader) into a one-line OutputError, or the
    BrokenPipeError the CLI ends quietly on."""
    try:
        yield
    except M3cvError:
        raise
    except OSError as err:
        if isinstance(err, BrokenPipeError) or err.errno == errno.EPIPE:
            raise BrokenPipeError(errno.EPIPE, "the reader of the output closed it") from None
        raise OutputError(f"cannot write {dst}: {err.strerror or err} (free some space or choose another "
                          "output)") from None
