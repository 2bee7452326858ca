"""Corpora fetched from a URL once, checked by sha256 and kept in the cache directory.

A download is written atomically (``tinygpt.runtime.files``: a partial file beside ``<name>``, renamed
to it once it is complete and checked), all under the lock ``<cache>/download-locks/<name>.lock``: a
second process that wants the same file waits for the first instead of downloading it twice, and the
partial file of a download that was killed is removed by the next fetch (remove_leftovers).
"""

import hashlib
import logging
import os
import urllib.parse
import urllib.request
from pathlib import Path

from filelock import FileLock

from tinygpt.errors import UserError
from tinygpt.runtime.files import atomic_write, remove_leftovers

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, sha256: str | None, cache_root: Path) -> Path:
    """The local copy of ``url`` under ``cache_root/downloads``, downloaded on first use.

    With ``sha256`` set, a copy whose checksum differs is refused, whether it was just downloaded or
    put there by hand. The download goes to a temporary file renamed into place, so a failed or
    concurrent download never leaves a partial file where a good one is expected.
    """
    name = Path(urllib.parse.urlparse(url).path).name or "download.txt"
    tag = (sha256 or hashlib.sha256(url.encode()).hexdigest())[:16]  # distinct files never collide
    folder, locks = cache_root / "downloads", cache_root / "download-locks"
    target = folder / f"{tag}-{name}"
    for path in (folder, locks):
        cache_folder(path, "download cache", "downloads are fetched again as needed")
    remove_leftovers(folder, lambda name: locks / f"{name}.lock")  # a killed download's partial file
    if _reuse(target, sha256):
        return target
    with FileLock(locks / f"{target.name}.lock"):
        if not _reuse(target, sha256):  # else another process downloaded it while this one waited
            _download(url, sha256, target)
    return target


def _reuse(target: Path, sha256: str | None) -> bool:
    """Whether ``target`` is there already (downloaded before, or put there by hand), checked."""
    if not os.path.lexists(target):
        return False
    fix = "delete it to download again, replace it with a good copy, or pass data.path=/path/to/your/copy"
    if not target.is_file():
        raise UserError(f"the downloaded corpus {target} is not a file; {fix}")
    _check_sha256(target, sha256, str(target), fix)
    return True


def cache_folder(folder: Path, what: str, refilled: str) -> Path:
    """``folder`` of the cache, created if needed; a file in its place, or a folder that cannot be made,
    is a one-line error (``what``: "download cache"; ``refilled``: how its content comes back)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(
            f"the {what} folder {folder} is a file; delete it ({refilled}) or set data.cache_dir to another "
            "folder"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot create the {what} folder {folder} ({exc.strerror}); set data.cache_dir to a folder you "
            "can write to"
        ) from exc
    return folder


def _download(url: str, sha256: str | None, target: Path) -> None:
    """Download ``url`` to ``target`` through a partial file. The caller holds the target's lock."""
    by_hand = f"put a copy at {target}, or pass data.path=/path/to/your/copy"
    log.info("downloading %s to %s", url, target)
    digest = hashlib.sha256()
    with atomic_write(target) as out:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                while block := response.read(1 << 20):
                    digest.update(block)
                    out.write(block)
        except (OSError, ValueError) as exc:  # offline, HTTP error, timeout, malformed URL
            raise UserError(f"cannot download data.url {url} ({exc}); {by_hand}") from exc
        _check_digest(digest.hexdigest(), sha256, f"the download of data.url {url}", by_hand)


def _check_sha256(path: Path, expected: str | None, what: str, fix: str) -> None:
    if expected is not None:
        _check_digest(file_sha256(path), expected, what, fix)


def _check_digest(actual: str, expected: str | None, what: str, fix: str) -> None:
    if expected is not None and actual != expected:
        raise UserError(f"{what} has sha256 {actual}, but data.sha256 expects {expected}; {fix}")
