"""Downloads of once-for-all's published files into the user's cache, checksummed and resumable.

A file is fetched into ``<name>.part`` beside its cache path; an interrupted transfer is resumed
with an HTTP ``Range`` request (a server that ignores it starts the file over), a complete one is
checked (length, then SHA-256 when one is expected) and only then renamed onto the cache path, so
the cache never holds a half-written or unchecked file. A checksum mismatch deletes the part
file. When no checksum is known beforehand, the one of the first complete download is kept in
``<name>.sha256`` and every later use of the cached file is checked against it.

The cache is ``$DYNOFA_CACHE_DIR`` or ``$XDG_CACHE_HOME/dynofa`` (default ``~/.cache/dynofa``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dynofa_ros.errors import DynofaError
from dynofa_ros.fileio import atomic_write_text

CHUNK = 1 << 20
OFA_FILES_URL = "https://raw.githubusercontent.com/han-cai/files/master/ofa/"


class DownloadError(DynofaError):
    """A download that failed or does not match; the message names the URL or file."""


@dataclass(frozen=True)
class Published:
    """A file once-for-all publishes: where it is and what the project makes of it."""

    name: str
    url: str
    preset: str | None = None  # the super-network preset of a weights file
    sha256: str | None = None  # None: not published; the first download's is kept

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


PUBLISHED: dict[str, Published] = {
    p.name: p
    for p in (
        Published("ofa-w1.0", OFA_FILES_URL + "ofa_nets/ofa_mbv3_d234_e346_k357_w1.0", "ofa-w1.0"),
        Published("ofa-w1.2", OFA_FILES_URL + "ofa_nets/ofa_mbv3_d234_e346_k357_w1.2", "ofa-w1.2"),
        Published("acc-predictor", OFA_FILES_URL + "acc_predictor.pth"),
        *(
            Published(f"note10-{r}", OFA_FILES_URL + f"note10/{r}_lookup_table.yaml")
            for r in (160, 176, 192, 208, 224)
        ),
    )
}
ALIASES = {p.filename: p.name for p in PUBLISHED.values()}


def published(name: str) -> Published:
    """The published file ``name`` (``ofa-w1.2`` or once-for-all's own file name)."""
    key = ALIASES.get(name, name)
    try:
        return PUBLISHED[key]
    except KeyError:
        raise DownloadError(
            f"unknown once-for-all file {name!r} (one of: {', '.join(PUBLISHED)})"
        ) from None


def cache_dir() -> Path:
    """The user's cache directory for dynofa (created on first use)."""
    env = os.environ.get("DYNOFA_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dynofa"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _check_hex(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    s = sha256.strip().lower()
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise DownloadError(f"checksum {sha256!r} is not a SHA-256 (64 hex digits)")
    return s


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify_cached(path: Path, sha256: str | None = None) -> str:
    """The cached file's SHA-256, checked against ``sha256`` or the one kept at download."""
    want = _check_hex(sha256)
    kept = _sidecar(path)
    if want is None and kept.is_file():
        want = kept.read_text().strip() or None
    got = sha256_of(path)
    if want is not None and got != want:
        raise DownloadError(f"{path}: checksum mismatch: sha256 {got}, expected {want}")
    return got


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """``url`` into ``dest`` (resuming ``dest.part``); returns ``dest``. A cached ``dest`` is
    checked and reused."""
    want = _check_hex(sha256)
    dest = Path(dest)
    if dest.is_file():
        verify_cached(dest, want)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "dynofa"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part file is already complete
            total, mode, resp = have, "ab", None
        else:
            raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"download of {url} failed: {reason}") from exc
    if resp is not None:
        with resp:
            if resp.status == 206 and have:
                mode = "ab"
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length is not None else -1
            else:  # 200: the server sends the whole file; start over
                mode, have = "wb", 0
                length = resp.headers.get("Content-Length")
                total = int(length) if length is not None else -1
            got = have
            if progress:
                where = f" (resuming at {have} bytes)" if have else ""
                print(f"downloading {url} -> {dest}{where}", file=sys.stderr)
            try:
                with open(part, mode) as fh:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        fh.write(block)
                        got += len(block)
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                raise DownloadError(
                    f"download of {url} interrupted at {got} bytes ({exc}); run the command "
                    f"again to resume from {part}"
                ) from exc
    size = part.stat().st_size
    if total >= 0 and size != total:
        raise DownloadError(
            f"download of {url} is incomplete: {part} has {size} of {total} bytes; run the "
            "command again to resume"
        )
    got_sha = sha256_of(part)
    if want is not None and got_sha != want:
        part.unlink()
        raise DownloadError(
            f"{dest.name} from {url}: checksum mismatch: sha256 {got_sha}, expected {want} "
            "(nothing kept)"
        )
    os.replace(part, dest)
    atomic_write_text(_sidecar(dest), got_sha + "\n")
    if progress:
        print(f"downloaded {dest} ({size} bytes, sha256 {got_sha})", file=sys.stderr)
    return dest


def forget(path: Path) -> None:
    """Drop a cached file (and its kept checksum) that turned out unusable."""
    for p in (path, _sidecar(path)):
        p.unlink(missing_ok=True)


def fetch_published(
    name: str, *, url: str | None = None, sha256: str | None = None, progress: bool = True
) -> tuple[Published, Path]:
    """The cached path of published file ``name`` (downloaded when missing)."""
    pub = published(name)
    dest = cache_dir() / "ofa" / pub.filename
    return pub, download(url or pub.url, dest, sha256=sha256 or pub.sha256, progress=progress)
