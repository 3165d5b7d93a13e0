"""Which process owns a leftover (a temp folder, a `.partial` file, an MLflow run), and is it dead?

`kill -9` (or a lost machine) runs no `finally` block, so whatever a process was writing stays
behind. lmforge names such things with their owner, `PID@HOST`, so the next process can tell
a dead owner's leftover (safe to remove) from a live concurrent process's work (never touched).
A leftover from another host is never judged: a pid means nothing there.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def this_host() -> str:
    """The host name, reduced to letters, digits and `-` so it fits in a file name."""
    return re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname())[:63] or "localhost"


def owner() -> str:
    """`PID@HOST` of this process."""
    return f"{os.getpid()}@{this_host()}"


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def owner_dead(token: str) -> bool:
    """True when `token` (`PID@HOST`, or a bare `PID` meaning this host) names a process of this
    host that no longer exists. False for a live owner, another host, or an unreadable token."""
    pid, _, host = token.partition("@")
    if not pid.isdigit() or (host and host != this_host()):
        return False
    return int(pid) != os.getpid() and not process_alive(int(pid))


@contextmanager
def owned_tempdir(prefix: str) -> Iterator[Path]:
    """A temp folder named `<prefix><PID@HOST>-<random>`, removed on exit; first removes the
    folders of this prefix whose owner died (a killed earlier process)."""
    sweep_tempdirs(prefix)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{owner()}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep_tempdirs(prefix: str) -> list[Path]:
    """Remove `<prefix><PID@HOST>-*` folders in the temp folder whose owner died."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{glob_escape(prefix)}*@*-*"):
        token = folder.name.removeprefix(prefix).rpartition("-")[0]  # mkdtemp's suffix has no "-"
        if folder.is_dir() and owner_dead(token):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def partial_path(out: Path) -> Path:
    """Where `out` is written before it is renamed into place: `.<name>.<PID@HOST>.partial`."""
    return out.with_name(f".{out.name}.{owner()}.partial")


def sweep_partials(folder: Path) -> list[Path]:
    """Remove `.<name>.<owner>.partial` files in `folder` whose owner died (`<owner>` may be a bare
    pid: files written before the host was part of the name)."""
    removed = []
    for path in folder.glob(".*.partial"):
        token = path.name.removesuffix(".partial").rpartition(".")[2]
        if path.is_file() and owner_dead(token):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def glob_escape(text: str) -> str:
    """`text` with glob's special characters taken literally."""
    return re.sub(r"([*?\[])", r"[\1]", text)
