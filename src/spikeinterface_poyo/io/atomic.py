"""Durable, all-or-nothing writes: the one implementation of fsync, atomic replacement and
sha256 that model folders, training checkpoints and NWB files share.

Everything is written under a temporary name next to its destination, flushed to disk, and
renamed into place with :func:`os.replace` (atomic on one file system), so a crash or an
error at any point leaves either the old content or the new one, never a mixture.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush one file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Make renames and new entries in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fsync_file(folder)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, obj, indent: int | None = None) -> None:
    """Write JSON and flush it to disk."""
    Path(path).write_text(json.dumps(obj, indent=indent))
    fsync_file(path)


def replace_file(staged: Path, target: Path) -> None:
    """Move a fully written file onto ``target`` atomically and durably."""
    fsync_file(staged)
    os.replace(staged, target)
    fsync_folder(Path(target).parent)


def staging_folder(target: Path) -> Path:
    """A new empty folder beside ``target`` to write its next content into."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))


def umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permission bits a new file gets (``mkstemp`` makes files 0600)."""
    return 0o666 & ~umask()


def _default_permissions(folder: Path) -> None:
    """Give a folder made by ``mkdtemp`` (0700) and its files the modes the umask allows."""
    folder.chmod(0o777 & ~umask())
    for file in folder.iterdir():
        if file.is_file():
            file.chmod(new_file_mode())


def replace_folder(staged: Path, target: Path) -> None:
    """Put a fully written folder at ``target`` atomically, replacing what was there.

    The files are flushed first; an existing ``target`` is moved aside, the new folder renamed
    into place, and only then the old one deleted, so ``target`` is complete at every moment.
    """
    for file in staged.iterdir():
        if file.is_file():
            fsync_file(file)
    _default_permissions(staged)
    fsync_folder(staged)
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / "previous")
        os.replace(staged, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, target)
    fsync_folder(target.parent)


@contextlib.contextmanager
def atomic_folder(target: str | Path):
    """Yield a staging folder; on success it replaces ``target``, on any error it is removed.

    >>> with atomic_folder("model") as staging:
    ...     (staging / "config.json").write_text("{}")
    """
    target = Path(target)
    staged = staging_folder(target)
    try:
        yield staged
        replace_folder(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
