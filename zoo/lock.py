"""The single-writer lock: an exclusive `flock` on a sidecar file that names its holder.

The kernel drops an flock when its holder dies, even by SIGKILL, so a crashed
writer never leaves a stale lock behind. The lock file itself is never deleted
(deleting lock files races with processes that are about to lock them).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from cellzoo.zoo.records import ZooError


class WriterLock:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0, what: str = "zoo") -> None:
        """Lock, waiting up to `timeout` seconds; a held lock is a ZooError naming the holder."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ZooError(f"cannot create the writer lock {self.path}: {err.strerror}") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise ZooError(f"{what} is open for writing by {self.holder()}; wait for it "
                                   f"to finish (or pass a timeout to wait)") from None
                time.sleep(0.05)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise ZooError(f"the filesystem of {self.path} does not support file locks; "
                                   f"keep the zoo on a local disk") from None
                raise
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if "pid" not in info:
            return f"another process (lock file {self.path})"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
        return f"pid {info['pid']} on host {info['host']} since {since} (lock file {self.path})"

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
