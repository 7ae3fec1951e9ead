"""A checkpoint folder opened once: every file operation is relative to its descriptor.

Why a descriptor and not paths. A path is a name, resolved again at every call: a symlink
retargeted between two calls, or two names for one folder (a symlink, a relative path, a bind
mount) make two calls about "one folder" touch two folders, or two writers believe they are alone.
Opening the folder once (``O_DIRECTORY``) and doing everything relative to that descriptor
(``dir_fd=``) pins it: the manifest and the arrays a reader sees, and the files a writer renames
and deletes, are all in the folder that was opened, whatever happens to its names meanwhile.

Reading a file (:meth:`Folder.read`):

- ``O_NOFOLLOW``: a symlink inside the folder is refused, so no name can lead out of it (``..``
  and ``/`` are refused earlier: only bare names this library writes are ever opened);
- ``O_NONBLOCK``: opening a FIFO returns at once instead of waiting for a writer forever;
- ``fstat`` on the open descriptor: only a regular file is read (not a FIFO, socket or device
  such as ``/dev/zero``), and only when its size is within the caller's bound (and equal to the
  size the manifest declares), so a 4 GiB file is refused before a byte is read.

A hard link inside the folder is a name inside the folder: it is read like any other file, and
what it holds is verified like any other (the manifest is validated, the arrays checksummed), so it
can do nothing a copy of the same bytes could not.

Writing: one writer at a time per folder, *by identity*: an exclusive ``flock`` on the folder's own
descriptor. Every alias of the folder (same path, relative path, symlink, bind mount) opens the same
inode, so they all contend for one lock; a folder cannot be hard-linked. Where the filesystem
refuses ``flock`` on a directory, a lock file inside the folder is used (opened with
``O_NOFOLLOW``); without ``fcntl`` (Windows) a ``filelock`` beside the folder's resolved path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from ._exceptions import CheckpointError

__all__ = ["Folder", "LOCK_NAME"]

#: The fallback lock file inside the folder (used only where ``flock`` on a directory fails).
LOCK_NAME = ".mixllm-save.lock"

_PINNED = (  # POSIX: every operation relative to the folder's descriptor
    hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY") and os.open in os.supports_dir_fd
    and os.rename in os.supports_dir_fd and os.unlink in os.supports_dir_fd and os.listdir in os.supports_fd
)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class Folder:
    """An open folder; use as a context manager (``with Folder(path) as f: ...``)."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        if create:
            path.mkdir(parents=True, exist_ok=True)
        self.fd: int | None = None
        if _PINNED:
            try:
                self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
            except NotADirectoryError:
                raise CheckpointError(f"{path} is not a folder") from None

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None

    # -- reading -------------------------------------------------------------------------------
    def _open_for_read(self, name: str) -> int:
        flags = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC
        if self.fd is not None:
            try:
                return os.open(name, flags, dir_fd=self.fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW met a symlink (Linux / BSD)
                    raise CheckpointError(
                        f"{self.path / name} is a symlink; a checkpoint's files must be inside its folder"
                    ) from None
                raise
        # no dir_fd (Windows): refuse links and non-files by lstat, then check the opened file is that one
        where = self.path / name
        before = os.lstat(where)
        if stat.S_ISLNK(before.st_mode):
            raise CheckpointError(f"{where} is a symlink; a checkpoint's files must be inside its folder")
        if not stat.S_ISREG(before.st_mode):
            raise CheckpointError(f"{where} is not a regular file")
        fd = os.open(where, flags | getattr(os, "O_BINARY", 0))
        after = os.fstat(fd)
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            os.close(fd)
            raise CheckpointError(f"{where} changed while it was opened")
        return fd

    def read(self, name: str, *, max_bytes: int, exact_size: int | None = None) -> bytes:
        """The bytes of the regular file ``name`` (a bare name), at most ``max_bytes`` of them.

        Raises ``FileNotFoundError`` when it is absent (the caller decides what that means) and
        :class:`CheckpointError` for a symlink, a non-regular file, or a size out of bounds."""
        fd = self._open_for_read(name)
        try:
            info = os.fstat(fd)
            where = self.path / name
            if not stat.S_ISREG(info.st_mode):
                raise CheckpointError(f"{where} is not a regular file (a FIFO, socket or device is never read)")
            if exact_size is not None and info.st_size != exact_size:
                raise CheckpointError(f"{where} has {info.st_size} bytes; the manifest says {exact_size}")
            if info.st_size > max_bytes:
                raise CheckpointError(f"{where} has {info.st_size} bytes, more than the {max_bytes} allowed")
            if _NONBLOCK:
                os.set_blocking(fd, True)
            chunks: list[bytes] = []
            total = 0
            while True:  # read what fstat promised, and never more than the bound (the file may grow)
                chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > max_bytes:
                    raise CheckpointError(f"{where} grew past the {max_bytes} bytes allowed while it was read")
            data = b"".join(chunks)
            if exact_size is not None and len(data) != exact_size:
                raise CheckpointError(f"{where} changed while it was read ({len(data)} of {exact_size} bytes)")
            return data
        finally:
            os.close(fd)

    # -- writing -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return os.listdir(self.fd) if self.fd is not None else os.listdir(self.path)

    def unlink(self, name: str) -> None:
        if self.fd is not None:
            os.unlink(name, dir_fd=self.fd)
        else:
            os.unlink(self.path / name)

    def fsync(self) -> None:
        """Make the folder's entries (the renames) durable; not supported everywhere."""
        with contextlib.suppress(OSError):
            if self.fd is not None:
                os.fsync(self.fd)
            else:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write ``data`` under a fresh temp name (``O_EXCL | O_NOFOLLOW``), fsync, then rename it to
        ``name``: readers see the old file or the new one, never a part."""
        tmp = f".{name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | getattr(os, "O_BINARY", 0)
        if self.fd is not None:
            fd = os.open(tmp, flags, 0o600, dir_fd=self.fd)
        else:
            fd = os.open(self.path / tmp, flags, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if self.fd is not None:
                os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            else:
                os.replace(self.path / tmp, self.path / name)
        except BaseException:
            with contextlib.suppress(OSError):
                self.unlink(tmp)
            raise

    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        """Exclusive lock on the folder's identity (module doc), waiting up to ``timeout`` seconds."""
        try:
            import fcntl
        except ImportError:  # Windows: no flock; lock beside the resolved folder
            from filelock import FileLock, Timeout

            real = Path(os.path.realpath(self.path))
            try:
                with FileLock(str(real.parent / f".{real.name}.lock"), timeout=timeout):
                    yield
            except Timeout:
                raise CheckpointError(f"{self.path} is being saved by another process (waited {timeout:g} s)") from None
            return
        assert self.fd is not None
        fd, own = self.fd, False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # probe: does this filesystem lock directories?
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            pass  # it does, and someone holds it
        except OSError:  # it does not (some network filesystems): a lock file inside the folder
            fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=self.fd)
            own = True
        try:
            deadline = time.monotonic() + timeout
            pause = 0.002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise CheckpointError(
                            f"{self.path} is being saved by another process or thread (waited {timeout:g} s)"
                        ) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            if own:
                os.close(fd)
