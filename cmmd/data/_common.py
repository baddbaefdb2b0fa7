"""Shared machinery of :mod:`cmmd.data`: the result type, argument checks, the data directory,
checksummed downloads and the "no data found" error.

Resolution order of every loader (README.md, section "Data"): (1) the local data directory (``$CMMD_DATA_DIR``,
else the download cache ``~/.cache/cmmd``) → (2) an offline copy shipped by a package → (3) a download
into the local data directory, verified by checksum → (4) :class:`FileNotFoundError` naming every option.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cmmd._checks import check_positive_int

ENV_VAR = "CMMD_DATA_DIR"
DEFAULT_CACHE = Path("~/.cache/cmmd")
DOWNLOAD_TIMEOUT_S = 30.0
SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images with optional labels and a record of where they came from.

    Attributes:
        images: float32 tensor of shape (N, C, H, W) with values in [0, 1].
        labels: int64 tensor of shape (N,), or ``None`` for unlabelled data (materials, CT).
        source: where the files were read, as ``"<kind>: <location>"`` (kind: ``CMMD_DATA_DIR``,
            ``cache``, ``download``, or the name of the offline package).
        note: one sentence for the book: which subset and which split these are.
        names: one name per image where images have names (file names), else empty.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    source: str
    note: str
    names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.images.shape[0])


class DownloadError(OSError):
    """Every mirror of a file failed (network error or checksum mismatch)."""


def check_split(split: str, valid: Sequence[str] = SPLITS) -> None:
    """Raise ``ValueError`` unless ``split`` is one of ``valid``."""
    if split not in valid:
        raise ValueError(f"split must be one of {', '.join(map(repr, valid))}; got {split!r}")


def check_request(split: str, n: int | None) -> None:
    """Validate a loader's ``split`` and ``n`` before any file is touched."""
    check_split(split)
    if n is not None:
        check_positive_int("n", n)


def check_n(n: int | None, available: int, what: str, *, name: str = "n") -> int:
    """Return how many items to take: ``available`` for ``n=None``, else ``n`` after checking it."""
    if n is None:
        return available
    check_positive_int(name, n)
    if n > available:
        raise ValueError(f"{name}={n} but {what} holds only {available} items; "
                         f"pass {name} <= {available} or {name}=None")
    return n


def data_dir() -> Path | None:
    """The directory named by ``$CMMD_DATA_DIR`` (read at call time), or ``None`` when unset or empty."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value).expanduser() if value else None


def local_dir() -> tuple[Path, str]:
    """The local data directory and its kind: ``$CMMD_DATA_DIR`` if set, else ``~/.cache/cmmd``.

    Loaders look here first and download into it.
    """
    env = data_dir()
    if env is not None:
        return env, ENV_VAR
    return DEFAULT_CACHE.expanduser(), "cache"


def to_unit_float(pixels: np.ndarray, max_value: float = 255.0) -> torch.Tensor:
    """Integer pixels (any shape) → float32 tensor in [0, 1], dividing by ``max_value``."""
    return torch.from_numpy(pixels.astype(np.float32)).div_(max_value)


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest (``"md5"`` or ``"sha256"``) of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(urls: Sequence[str], dest: Path, *, checksum: tuple[str, str]) -> Path:
    """Download the first URL that works to ``dest`` and verify ``checksum = (algorithm, hexdigest)``.

    Writes to ``dest`` + ``.part`` and renames only after the checksum matched, so a broken download
    never looks like data. Raises :class:`DownloadError` listing every URL tried and why it failed.
    """
    algorithm, expected = checksum
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, part.open("wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except (OSError, ValueError, http.client.HTTPException) as error:
            part.unlink(missing_ok=True)
            failures.append(f"{url} ({error})")
            continue
        actual = file_digest(part, algorithm)
        if actual == expected:
            part.replace(dest)
            return dest
        part.unlink(missing_ok=True)
        failures.append(f"{url} ({algorithm} {actual} != expected {expected})")
    raise DownloadError("download failed: " + "; ".join(failures))


def set_aside(path: Path, reason: str) -> Path:
    """Rename a corrupt file to ``<name>.corrupt`` (replacing an older one) so that it no longer blocks the
    loader or its download, and warn with the file, the reason and what to do; return the new path."""
    target = path.with_name(path.name + ".corrupt")
    path.replace(target)
    warnings.warn(f"{path} {reason}; it was moved to {target} so that it no longer stands in the way (a "
                  f"download fetches the file again); delete {target.name} once you no longer need it",
                  stacklevel=3)
    return target


def not_found(what: str, *, missing: str, offline: str, urls: Sequence[str],
              download_error: str | None) -> FileNotFoundError:
    """The error raised when no source of a dataset worked; it names every option to fix it.

    ``missing`` names the files (relative to the local data directory), ``offline`` says why the
    offline copy was not found and how to install it.
    """
    root, kind = local_dir()
    if kind == ENV_VAR:
        local = f"${ENV_VAR} = {root}, but {missing} is not there"
    else:
        local = (f"${ENV_VAR} is not set and the download cache {root} has no {missing}; "
                 f"set {ENV_VAR} to a directory holding {missing}")
    if download_error is None:
        remote = f"download=False, so nothing was downloaded from {', '.join(urls)}"
    else:
        remote = download_error
    return FileNotFoundError(f"{what} not found. Tried, in order:\n  (1) {local}\n  (2) {offline}\n  (3) {remote}")
