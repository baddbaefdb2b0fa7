"""CIFAR-10: 32×32 colour images in 10 classes, read from the binary version (no pickle).

There is no offline copy of CIFAR-10 on our machines (only 20 images exist in a wheel, too few to
train): without ``$CMMD_DATA_DIR/cifar-10-batches-bin/`` or a download the loader raises
:class:`FileNotFoundError` rather than substituting anything.

Binary format (https://www.cs.toronto.edu/~kriz/cifar.html): each file holds 10,000 records of
3,073 bytes: one label byte, then 1,024 red, 1,024 green and 1,024 blue bytes, each plane a 32×32
image in row-major order.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from cmmd.data._common import (
    DownloadError,
    ImageDataset,
    check_n,
    check_request,
    fetch,
    file_digest,
    local_dir,
    not_found,
    set_aside,
    to_unit_float,
)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_DIRNAME = "cifar-10-batches-bin"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR10_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}
_RECORD = 1 + 3 * 32 * 32


def read_cifar10_bin(path: Path, *, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch file.

    Returns:
        pixels of shape (N, 3, 32, 32) uint8 (channels R, G, B) and labels of shape (N,) int64,
        for the first ``count`` records (``None``: all).
    """
    with path.open("rb") as stream:
        raw = stream.read(-1 if count is None else count * _RECORD)
    if len(raw) == 0 or len(raw) % _RECORD:
        raise ValueError(f"{path} is not a CIFAR-10 binary batch: {len(raw)} bytes is not a multiple of {_RECORD}")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{path} holds labels above 9: not a CIFAR-10 binary batch")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _extract(archive: Path, target: Path) -> bool:
    """Extract only the six regular ``.bin`` batch files of the archive into ``target``; return success.

    The archive must have the md5 of the release (:data:`CIFAR10_MD5`) and be readable to its end; a
    truncated or damaged one is set aside as ``<name>.corrupt`` with a warning (:func:`set_aside`) and
    ``False`` is returned, so that it is neither extracted again on every call nor blocks the download.
    Each member goes to ``<name>.part`` and is renamed when complete.
    """
    if file_digest(archive, "md5") != CIFAR10_MD5:
        set_aside(archive, f"does not have the md5 {CIFAR10_MD5} of {CIFAR10_ARCHIVE} (truncated or damaged)")
        return False
    wanted = {f"{CIFAR10_DIRNAME}/{name}" for names in CIFAR10_FILES.values() for name in names}
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                if member.name in wanted and member.isfile():
                    part = target / (Path(member.name).name + ".part")
                    with tar.extractfile(member) as source, part.open("wb") as out:
                        out.write(source.read())
                    part.replace(target / Path(member.name).name)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        set_aside(archive, f"cannot be extracted ({type(error).__name__}: {error})")
        return False
    return True


def _batch_files(directory: Path, split: str) -> list[Path] | None:
    paths = [directory / name for name in CIFAR10_FILES[split]]
    return paths if all(p.is_file() for p in paths) else None


def _read_split(paths: list[Path], n: int | None) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels, have = [], [], 0
    for path in paths:
        if n is not None and have >= n:
            break
        p, y = read_cifar10_bin(path, count=None if n is None else n - have)
        pixels.append(p)
        labels.append(y)
        have += len(y)
    return np.concatenate(pixels), np.concatenate(labels)


def load_cifar10(split: str = "train", *, n: int | None = None, download: bool = True) -> ImageDataset:
    """CIFAR-10: images (N, 3, 32, 32) float32 in [0, 1] (RGB), labels (N,) int64 in 0..9.

    Standard split: 50,000 train (``data_batch_1..5.bin`` in order) / 10,000 test (``test_batch.bin``).
    Class names: :data:`CIFAR10_CLASSES`. Sources, in order: ``$CMMD_DATA_DIR/cifar-10-batches-bin/``
    (or ``~/.cache/cmmd/...`` when unset; a ``cifar-10-binary.tar.gz`` placed there is extracted) →
    download of :data:`CIFAR10_URL` (md5-checked, 162 MB) → :class:`FileNotFoundError`.
    There is no offline copy.

    Args:
        split: ``"train"`` or ``"test"``.
        n: take the first ``n`` images (``None``: all).
        download: allow the download step.
    """
    check_request(split, n)
    root, kind = local_dir()
    directory = root / CIFAR10_DIRNAME
    source = f"{kind}: {directory}"
    download_error = None
    if _batch_files(directory, split) is None and (root / CIFAR10_ARCHIVE).is_file():
        _extract(root / CIFAR10_ARCHIVE, directory)  # a bad archive is set aside, so the download below runs
    if _batch_files(directory, split) is None and download:
        try:
            archive = download_archive(root)
            if _extract(archive, directory):
                archive.unlink()
            source = f"download: {directory}"
        except DownloadError as error:
            download_error = str(error)
    paths = _batch_files(directory, split)
    if paths is None:
        raise not_found(
            f"CIFAR-10 ({split})",
            missing=f"{CIFAR10_DIRNAME}/{{{','.join(CIFAR10_FILES[split])}}} (or {CIFAR10_ARCHIVE})",
            offline="there is no offline copy of CIFAR-10 (no package ships it)",
            urls=[CIFAR10_URL], download_error=download_error)
    pixels, labels = _read_split(paths, n)
    take = check_n(n, len(labels), f"CIFAR-10 {split} in {directory}")
    note = f"CIFAR-10, standard {split} split ({'50,000' if split == 'train' else '10,000'} images)"
    return ImageDataset(to_unit_float(pixels[:take]), torch.from_numpy(labels[:take]), source, note)


def download_archive(root: Path) -> Path:
    """Download ``cifar-10-binary.tar.gz`` into ``root`` (md5-checked) and return its path."""
    return fetch([CIFAR10_URL], root / CIFAR10_ARCHIVE, checksum=("md5", CIFAR10_MD5))
