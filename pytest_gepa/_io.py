"""The one way pytest-gepa writes a file: atomically, under a lock, readable like any source file.

Artifacts, rejected candidates, cassettes and reports all go through :func:`atomic_write`, so an
interrupted run or two parallel writers (xdist workers, two terminals) never leave half a file.
The lock lives in the temp directory, not beside the file, so it is never committed by accident.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from filelock import FileLock

LOCK_TIMEOUT_S = 60.0


class LockTimeout(OSError):
    """Another process held the file's lock for longer than ``LOCK_TIMEOUT_S``."""


def lock_for(path: Path) -> FileLock:
    """The inter-process lock of ``path`` (one per resolved path, kept in the temp directory)."""
    # Imported on the first write: a gate or a replay that writes nothing never loads filelock.
    from filelock import FileLock

    key = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:24]
    return FileLock(Path(tempfile.gettempdir(), f"pytest-gepa-{key}.lock"), timeout=LOCK_TIMEOUT_S)


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: a temp file in the same folder, fsynced, renamed over it.

    Raises ``LockTimeout`` when another writer holds the lock too long, ``OSError`` when the
    folder cannot be written; the old file is intact either way.
    """
    from filelock import Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with lock_for(path):
            _remove_leftovers(path)
            handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                                 suffix=".tmp", delete=False)
            try:
                with handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                # mkstemp makes the file private (0600); these are source files like any other.
                os.chmod(handle.name, 0o644)
                os.replace(handle.name, path)
            except BaseException:
                Path(handle.name).unlink(missing_ok=True)
                raise
    except Timeout:
        raise LockTimeout(f"{path}: another process has held its lock for {LOCK_TIMEOUT_S:.0f}s (a compile of "
                          "the same target in parallel?); wait for it and run again") from None


def _remove_leftovers(path: Path) -> None:
    """Temp files of a write that was killed (SIGKILL leaves no chance to clean up). Safe under the
    lock: no other writer of this file is running."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        leftover.unlink(missing_ok=True)
