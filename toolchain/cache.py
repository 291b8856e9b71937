"""The compress cache (analyses, latency tables, trained models, teacher logits, data, checkpoints):
an optimisation, never a point of failure.

An entry is written atomically with its sha256 beside it (`NAME.sha256`) and checked against it
before use. A cache that cannot be written (read-only, full, not ours) is warned about once and the
stage goes on without it; an entry that cannot be read, does not match its hash or is not what the
reader expects (bad bytes, another schema) is dropped with a warning and measured again. No heavy
imports: `bench` uses it without torch.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .fileio import atomic_raw, remove, sha256_of, write_fault

logger = logging.getLogger(__name__)

T = TypeVar("T")
# what a reader of a damaged or foreign entry raises (JSON and UTF-8 errors are ValueErrors; torch.load
# raises RuntimeError or UnpicklingError on bad bytes, numpy BadZipFile or zlib.error); anything else is a bug
BAD_ENTRY = (OSError, ValueError, EOFError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError,
             zipfile.BadZipFile, zlib.error)

_warned: set[str] = set()


def warn_once(place: Path, why: str) -> None:
    """One warning per unwritable cache folder and process, not one per entry."""
    if str(place) not in _warned:
        _warned.add(str(place))
        logger.warning("the cache %s cannot be written (%s); going on without it (COMPRESS_CACHE sets another "
                       "place)", place, why.split(";")[0])


def hash_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def get(path: Path, read: Callable[[Path], T]) -> T | None:
    """The entry at `path` as `read` returns it, or None: absent, or dropped with a warning when its
    bytes do not match the recorded sha256 or `read` refuses them. An entry written before hashes
    were recorded is used when `read` accepts it, and its hash recorded then."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        recorded = hash_path(path).read_text().strip() if hash_path(path).is_file() else None
        digest = sha256_of(path)
        if recorded is not None and recorded != digest:
            return drop(path, f"its sha256 {digest[:12]} is not the recorded {recorded[:12]}")
        value = read(path)
    except BAD_ENTRY as e:
        return drop(path, f"{type(e).__name__}: {' '.join(str(e).split())[:120]}")
    if recorded is None:
        _record(path, digest)
    return value


def put(path: Path, write: Callable[[Path], None], *, hashed: bool = True) -> bool:
    """Store an entry (`write` fills a temp path, moved into place) and its sha256 (not for a journal,
    whose reader checks each line); False, warned once, where the cache cannot be written: the
    caller keeps what it computed and goes on."""
    path = Path(path)
    try:
        with atomic_raw(path) as tmp:
            write(tmp)
            digest = sha256_of(tmp) if hashed else ""
    except (OSError, RuntimeError) as e:
        why = write_fault(e)
        if why is None:
            raise
        warn_once(path.parent, why)
        return False
    return _record(path, digest) if hashed else True


def append(path: Path, text: str) -> bool:
    """Append to a journal entry (a line per result, each checked by its reader); False, warned
    once, where it cannot be written."""
    def write() -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)

    return _tolerated(path, write)


def read_bytes(path: Path) -> bytes:
    """A journal's bytes, or none where it is absent or cannot be read (warned: measured again)."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as e:
        logger.warning("ignoring the unreadable cache entry %s (%s); measuring again", path, e.strerror or e)
        return b""


def drop(path: Path, why: str) -> None:
    """Remove a damaged or foreign entry (and its hash) with a warning; it is measured again."""
    logger.warning("dropping the cache entry %s (%s); measuring again", path, why)
    discard(path)


def discard(path: Path) -> None:
    """Remove an entry and its hash, quietly (a finished run's checkpoint)."""
    remove(Path(path))
    remove(hash_path(path))


def _record(path: Path, digest: str) -> bool:
    def write() -> None:
        with atomic_raw(hash_path(path)) as tmp:
            tmp.write_text(digest + "\n")

    return _tolerated(path, write)


def _tolerated(path: Path, write) -> bool:
    """Run a cache write; a fault of the machine (full disk, read-only) warns once for the folder and
    gives False (the stage goes on without the cache); any other error is a bug and rises."""
    try:
        write()
    except OSError as e:
        why = write_fault(e)
        if why is None:
            raise
        warn_once(Path(path).parent, why)
        return False
    return True
