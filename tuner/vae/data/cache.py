"""Decoded images cached on disk as uint8, memory-mapped by every process that reads them.

Decoding a folder of JPEGs is the slow part of loading it (minutes for 100,000 photos), and a
study repeats it in every worker. Here a folder is decoded once, in parallel on the usable
cores with a progress bar, into ``images.npy`` under the cache folder (``$TUNER_CACHE_DIR``,
else ``~/.cache/vae-beta-tuner``), keyed by everything that decides its content: the folder,
each image's relative path, size and modification time, the target ``size`` and ``color``.
Every later load, by any trial or worker of the machine, memory-maps that file: the processes
share the operating system's page cache instead of each holding a copy.

* A changed source (an image added, removed, replaced or touched, or another ``size`` or
  ``color``) is another key: the cache is built again, and the old entry is left for
  ``rm -r`` (the folder is named in the first progress line).
* A damaged entry (a file cut short or changed, a manifest that does not match) is found by
  its BLAKE2 digest, checked once per process, and rebuilt; it is never used. The check
  reads the file once (about 1 s per GB), which also warms the page cache for training.
* Two processes building the same entry at once each write a private temporary folder and
  rename it into place; the second rename loses, and that process reads the winner's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

CACHE_ENV = "TUNER_CACHE_DIR"
CACHE_VERSION = 1  # part of every key: a change of the cache's layout rebuilds every entry
IMAGES, MANIFEST = "images.npy", "manifest.json"
_verified: set[Path] = set()  # entries whose digest this process has checked


def cache_root() -> Path:
    """Where cached datasets live: ``$TUNER_CACHE_DIR``, else ``~/.cache/vae-beta-tuner``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vae-beta-tuner"


def source_key(kind: str, source: Path, files: Sequence[Path], options: dict[str, Any]) -> str:
    """The cache key of ``files`` under ``source`` decoded with ``options``: it changes when an
    image is added, removed, replaced or touched, or when an option changes."""
    listing = []
    for file in files:
        stat = file.stat()
        listing.append([str(file.relative_to(source)), stat.st_size, stat.st_mtime_ns])
    content = {"version": CACHE_VERSION, "kind": kind, "source": str(source.resolve()), "options": options}
    digest = hashlib.sha256(json.dumps({**content, "files": listing}, sort_keys=True).encode())
    return f"{kind}-{source.name[:40]}-{digest.hexdigest()[:20]}"


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=20)
    with path.open("rb") as file:
        while chunk := file.read(1 << 23):
            digest.update(chunk)
    return digest.hexdigest()


def _load(entry: Path) -> np.ndarray | None:
    """The entry's images, memory-mapped; None when it is missing or damaged."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        images = np.load(entry / IMAGES, mmap_mode="r")
        if list(images.shape) != manifest["shape"] or str(images.dtype) != "uint8":
            return None
        if entry not in _verified:
            if _file_digest(entry / IMAGES) != manifest["digest"]:
                return None
            _verified.add(entry)
        return images
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached(key: str, build: Callable[[Path], None], label: str) -> np.ndarray:
    """The images of entry ``key``, memory-mapped; built first when the entry is missing or
    damaged, by ``build(path)``, which writes the uint8 array to the ``.npy`` file ``path``
    (``label`` names the source in messages). Errors of ``build`` leave nothing behind."""
    root = cache_root()
    entry = root / key
    images = _load(entry) if entry.exists() else None
    if images is not None:
        return images
    if entry.exists():
        print(f"{label}: the cached copy in {entry} is damaged; decoding again", file=sys.stderr, flush=True)
        shutil.rmtree(entry, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        build(tmp / IMAGES)
        shape = list(np.load(tmp / IMAGES, mmap_mode="r").shape)
        (tmp / MANIFEST).write_text(json.dumps({"shape": shape, "digest": _file_digest(tmp / IMAGES)}))
        with contextlib.suppress(OSError):  # another process renamed its copy into place first: use it
            tmp.rename(entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    images = _load(entry)
    if images is None:
        raise OSError(f"{entry}: the cache entry just written cannot be read back")
    return images


def decode_all(
    files: Sequence[Path], read: Callable[[Path], np.ndarray], label: str, workers: int
) -> Iterable[np.ndarray]:
    """``read(file)`` of every file, in order, decoded on ``workers`` threads (PIL releases the
    GIL while it decodes and resizes), with a progress bar on stderr on a terminal; in a log
    (a worker's, a batch job's), a plain line every tenth of the way or every minute for a
    folder of :data:`LOG_FROM` images or more (a small one decodes in seconds)."""
    from tqdm import tqdm

    bar = tqdm(total=len(files), desc=f"decoding {label}", unit="img", file=sys.stderr, mininterval=2.0, disable=None)
    lines = bar.disable and len(files) >= LOG_FROM
    started = last = time.monotonic()
    next_tenth = 0.1
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, image in enumerate(pool.map(read, files, chunksize=64), start=1):
            bar.update(1)
            now = time.monotonic()
            if lines and (done >= next_tenth * len(files) or now - last >= 60.0):
                rate = done / max(now - started, 1e-9)
                print(
                    f"decoding {label}: {done:,}/{len(files):,} images ({done / len(files):.0%}; "
                    f"{now - started:.0f} s, eta {(len(files) - done) / rate:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                last = now
                while next_tenth <= done / len(files):
                    next_tenth += 0.1
            yield image
    bar.close()


LOG_FROM = 2000  # images: a folder this large prints progress lines in a log
