"""Corpora fetched from a URL once, checked by sha256 and kept in the cache directory."""

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from tinygpt.errors import UserError

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
    target = cache_root / "downloads" / f"{tag}-{name}"
    by_hand = f"put a copy at {target}, or pass data.path=/path/to/your/copy"
    if target.is_file():  # downloaded before, or put there by hand
        fix = "delete it to download again, replace it with a good copy, or pass data.path=/path/to/your/copy"
        _check_sha256(target, sha256, str(target), fix)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    shutil.copyfileobj(response, out)
            except (OSError, ValueError) as exc:  # offline, HTTP error, timeout, malformed URL
                raise UserError(f"cannot download data.url {url} ({exc}); {by_hand}") from exc
        _check_sha256(Path(tmp), sha256, f"the download of data.url {url}", by_hand)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; this is an ordinary cached file
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def _check_sha256(path: Path, expected: str | None, what: str, fix: str) -> None:
    if expected is None:
        return
    actual = file_sha256(path)
    if actual != expected:
        raise UserError(f"{what} has sha256 {actual}, but data.sha256 expects {expected}; {fix}")
