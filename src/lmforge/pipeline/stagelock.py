"""One computation of a stage's cache key at a time, across processes.

Two runs of the same config in one output folder compute a stage in the same scratch folder
(`runs/.work/<stage>-<key16>`) and publish the same cache entry; unguarded, each deleted or
renamed what the other was writing. The runner holds `runs/.work/<stage>-<key16>.lock` (an
flock) while it computes and publishes a key, so the second run waits, then finds the cache
entry and reuses it. The OS frees an flock when its holder dies (`kill -9` included), so a
killed run's scratch (training checkpoints, a tuning study) is still resumed by the next run.

The lock file is removed by its holder on release. A waiter that then wakes up holding the
removed file's lock sees that the path no longer names its file, and locks the path afresh.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent runs of one config there are not guarded
    fcntl = None  # type: ignore[assignment]


@contextmanager
def stage_lock(path: Path, holder: str, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock file `path` for the block, writing `holder` (who we are) into it.

    When another process holds it, `on_wait` is called once with what that process wrote
    (empty if it has not written yet), then this blocks until the lock is free.
    """
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    announced = False
    while True:
        handle = path.open("a+b")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not announced:
                    announced = True
                    handle.seek(0)
                    on_wait(handle.read(200).decode("utf-8", "replace").strip())
                fcntl.flock(handle, fcntl.LOCK_EX)  # Ctrl-C still interrupts the wait
        except BaseException:
            handle.close()
            raise
        if _names(path, handle.fileno()):
            break
        handle.close()  # the holder removed this file as it let go: lock the new one
    try:
        handle.truncate(0)
        handle.write(holder.encode())
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # before unlocking: a waiter then finds the path gone (_names)
        handle.close()


def _names(path: Path, fd: int) -> bool:
    """Whether `path` still is the file open as `fd`."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)
