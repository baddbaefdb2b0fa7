"""CelebA (aligned and cropped faces), preprocessed as in the authors' ``run_celeba_superres.py``.

Files, under the local data directory (the layout of torchvision's ``CelebA``, so a torchvision root
works as ``$CMMD_DATA_DIR``)::

    celeba/list_eval_partition.txt        lines "000001.jpg 0": 0 = train, 1 = valid, 2 = test
    celeba/img_align_celeba/*.jpg         the extracted images (178 wide, 218 high, RGB), or
    celeba/img_align_celeba.zip           the official archive, read in place (no extraction)

There is no offline copy of CelebA (no package ships it): without these files or a download the
loader raises :class:`FileNotFoundError`.

CelebA (Liu et al., ICCV 2015) is available for non-commercial research purposes only.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cmmd._checks import check_positive_int
from cmmd.data._common import (
    DownloadError,
    ImageDataset,
    check_n,
    check_split,
    fetch,
    local_dir,
    not_found,
    set_aside,
    to_unit_float,
)

CELEBA_CREDIT = "CelebA (Liu et al., ICCV 2015), non-commercial research use only."
CELEBA_SPLITS = ("train", "valid", "test")
CELEBA_DIRNAME = "celeba"
CELEBA_IMAGE_DIR = "img_align_celeba"
CELEBA_ARCHIVE = "img_align_celeba.zip"
CELEBA_PARTITION = "list_eval_partition.txt"
#: Google Drive file id and md5 of the official files, as listed in torchvision's
#: ``torchvision/datasets/celeba.py`` (``CelebA.file_list``; pytorch/vision at commit 05486281a17e).
CELEBA_FILES = {
    CELEBA_ARCHIVE: ("0B7EVK8r0v71pZjFTYXZWM3FlRnM", "00d2c5bc6d35e252742224ab0c1e8fcb"),
    CELEBA_PARTITION: ("0B7EVK8r0v71pY0NSMzRuSXJEVkk", "d32c9cbf5e040fd4025c592c306e6668"),
}
CELEBA_URL = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"
#: Height and width of every aligned CelebA image, and the authors' crop: rows 39:-39, columns 19:-19.
CELEBA_IMAGE_SHAPE = (218, 178)
CELEBA_CROP = (39, 19)
_PARTITION_CODES = {"train": 0, "valid": 1, "test": 2}
_SPLIT_SIZES = {"train": "162,770", "valid": "19,867", "test": "19,962"}
_CHUNK = 256  # images resized per interpolate call (bounds the memory of the 3×140×140 crops)


def celeba_url(name: str) -> str:
    """The Google Drive download URL of one of :data:`CELEBA_FILES`."""
    return CELEBA_URL.format(id=CELEBA_FILES[name][0])


def read_partition(path: Path, split: str) -> list[str]:
    """File names of ``split`` listed in ``list_eval_partition.txt``, in file-name order.

    Blank lines are skipped; any other line that is not ``"<name> <0|1|2>"`` raises ``ValueError``.
    """
    code, names = _PARTITION_CODES[split], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise ValueError(f"{path}, line {number}: expected '<file name> <0|1|2>', got {line!r}")
        if int(fields[1]) == code:
            names.append(fields[0])
    return sorted(names)


def decode_celeba_jpeg(data: bytes, name: str) -> torch.Tensor:
    """One aligned CelebA JPEG as a float32 tensor (3, 218, 178) in [0, 1] (torchvision's ``ToTensor``).

    Raises ``ValueError`` unless the bytes decode to an image of 218×178 pixels with 3 (RGB) channels.
    """
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - Pillow is in the book and test extras
        raise ImportError("reading CelebA JPEG files needs Pillow: pip install pillow") from error
    try:
        with Image.open(io.BytesIO(data)) as image:
            height, width, mode = image.height, image.width, image.mode
            pixels = np.asarray(image) if (height, width) == CELEBA_IMAGE_SHAPE and mode == "RGB" else None
    except OSError as error:  # PIL.UnidentifiedImageError, truncated files
        raise ValueError(f"{name} is not a readable image ({error})") from error
    if pixels is None:
        raise ValueError(
            f"{name} is {height}x{width} pixels in mode {mode}; aligned CelebA images are "
            f"{CELEBA_IMAGE_SHAPE[0]}x{CELEBA_IMAGE_SHAPE[1]} (height x width) with 3 channels (RGB)")
    return to_unit_float(pixels).permute(2, 0, 1).contiguous()


def crop_and_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """The authors' preprocessing of (N, 3, 218, 178) images in [0, 1]: crop to 140×140, resize, clamp.

    ``images[..., 39:-39, 19:-19]`` then ``F.interpolate(..., size=[size, size], mode="bicubic")``
    (``align_corners=False``, no antialiasing), as ``run_celeba_superres.py``; bicubic interpolation
    overshoots [0, 1] near edges, so the result is clamped to [0, 1] (the authors do not clamp).
    """
    rows, cols = CELEBA_CROP
    cropped = images[..., rows:-rows, cols:-cols]
    return F.interpolate(cropped, size=[size, size], mode="bicubic").clamp_(0.0, 1.0)


def _read_folder(folder: Path, names: list[str]) -> Iterator[tuple[bytes, str]]:
    for name in names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed in {CELEBA_PARTITION} but missing: "
                                    f"{folder} holds an incomplete extraction of {CELEBA_ARCHIVE}")
        yield path.read_bytes(), str(path)


def _read_zip(archive: Path, names: list[str]) -> Iterator[tuple[bytes, str]]:
    """The bytes of each image ``names`` in the archive; a damaged archive or member raises ``ValueError``
    naming it (zipfile checks each member's CRC)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = {Path(info.filename).name: info for info in zf.infolist() if not info.is_dir()}
            for name in names:
                if name not in members:
                    raise FileNotFoundError(f"{archive} has no member {name} (listed in {CELEBA_PARTITION}); "
                                            f"the archive is incomplete or not {CELEBA_ARCHIVE}")
                yield zf.read(members[name]), f"{archive}:{members[name].filename}"
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{archive} is damaged ({type(error).__name__}: {error}); delete it (a download fetches "
                         f"it again, md5-checked) or replace it with the official {CELEBA_ARCHIVE}") from None


def _images_location(directory: Path) -> Path | None:
    """The extracted image folder if present, else the archive if present, else ``None``."""
    folder, archive = directory / CELEBA_IMAGE_DIR, directory / CELEBA_ARCHIVE
    if folder.is_dir():
        return folder
    return archive if archive.is_file() else None


def _download(directory: Path) -> list[str]:
    """Fetch the missing official files into ``directory`` (md5-checked); return the names fetched.

    Raises :class:`DownloadError` naming every file that failed.
    """
    failures, fetched = [], []
    for name, (_, md5) in CELEBA_FILES.items():
        if name == CELEBA_ARCHIVE and _images_location(directory) is not None:
            continue
        if (directory / name).is_file():
            continue
        try:
            fetch([celeba_url(name)], directory / name, checksum=("md5", md5))
            fetched.append(name)
        except DownloadError as error:
            failures.append(f"{name}: {error}")
    if failures:
        raise DownloadError("; ".join(failures))
    return fetched


def load_celeba(split: str = "train", *, n: int | None = None, size: int = 64,
                download: bool = True) -> ImageDataset:
    """CelebA faces as ``run_celeba_superres.py`` prepares them: (N, 3, size, size) float32 in [0, 1].

    Each aligned image (218×178, RGB) becomes a float in [0, 1] (torchvision's ``ToTensor``), is cropped
    to rows 39:-39 and columns 19:-19 (140×140, the face) and resized to ``size``×``size`` with
    ``torch.nn.functional.interpolate(..., mode="bicubic")`` (``align_corners=False``, no antialiasing).
    Bicubic interpolation overshoots [0, 1]; unlike the authors' script, the result is **clamped to
    [0, 1]** (the promise of every :mod:`cmmd.data` loader). The paper trains on the first 20,000 images
    of the train split (``n=20_000``).

    Images of a split come in file-name order (the order of ``list_eval_partition.txt`` and of
    torchvision's ``CelebA``); ``n`` takes the first ``n`` and reads only those. ``result.names`` holds
    the file names, ``result.labels`` is ``None``. Standard split sizes: 162,770 train, 19,867 valid,
    19,962 test.

    Sources, in order: ``$CMMD_DATA_DIR/celeba/`` (or ``~/.cache/cmmd/celeba/`` when unset) holding
    ``list_eval_partition.txt`` and either the folder ``img_align_celeba/`` or ``img_align_celeba.zip``
    (read in place) → download of the missing official files from Google Drive
    (:data:`CELEBA_FILES`, md5-checked; the archive is 1.4 GB and kept) → :class:`FileNotFoundError`.
    There is no offline copy. CelebA (Liu et al., ICCV 2015) is for non-commercial research use only.

    Args:
        split: ``"train"``, ``"valid"`` or ``"test"``.
        n: take the first ``n`` images of the split (``None``: all).
        size: side of the output images in pixels.
        download: allow the download step.

    Raises:
        ValueError: bad arguments, ``n`` above the split size, a malformed partition file, or an image
            that is not a readable 218×178 RGB image.
        FileNotFoundError: no files and no (successful) download, or an image listed in the partition
            file but absent.
    """
    check_split(split, CELEBA_SPLITS)
    if n is not None:
        check_positive_int("n", n)
    check_positive_int("size", size)
    root, kind = local_dir()
    directory = root / CELEBA_DIRNAME
    source_kind, download_error = kind, None
    partition = directory / CELEBA_PARTITION
    archive = directory / CELEBA_ARCHIVE
    if _images_location(directory) == archive and not zipfile.is_zipfile(archive):
        set_aside(archive, "is not a readable zip archive (truncated or damaged)")  # so the download can run
    if (not partition.is_file() or _images_location(directory) is None) and download:
        try:
            if _download(directory):
                source_kind = "download"
        except DownloadError as error:
            download_error = str(error)
    location = _images_location(directory)
    if not partition.is_file() or location is None:
        urls = [celeba_url(name) for name in CELEBA_FILES]
        raise not_found(
            f"CelebA ({split})",
            missing=(f"{CELEBA_DIRNAME}/{CELEBA_PARTITION} and {CELEBA_DIRNAME}/{CELEBA_ARCHIVE} "
                     f"(or the extracted folder {CELEBA_DIRNAME}/{CELEBA_IMAGE_DIR}/*.jpg)"),
            offline="there is no offline copy of CelebA (no package ships it)",
            urls=urls, download_error=download_error)
    names = read_partition(partition, split)
    if not names:
        raise ValueError(f"{partition} lists no {split} images (code {_PARTITION_CODES[split]})")
    names = names[: check_n(n, len(names), f"the CelebA {split} split of {partition}")]
    reader = _read_folder if location.is_dir() else _read_zip
    chunks, batch = [], []
    for data, where in reader(location, names):
        batch.append(decode_celeba_jpeg(data, where))
        if len(batch) == _CHUNK:
            chunks.append(crop_and_resize(torch.stack(batch), size))
            batch = []
    if batch:
        chunks.append(crop_and_resize(torch.stack(batch), size))
    images = torch.cat(chunks)
    note = (f"CelebA, first {len(names)} images of the standard {split} split "
            f"({_SPLIT_SIZES[split]} images; {CELEBA_PARTITION}, file-name order) from {location.name}, "
            f"cropped to 140x140 and bicubic-resized to {size}x{size}, clamped to [0, 1]. {CELEBA_CREDIT}")
    return ImageDataset(images, None, f"{source_kind}: {location}", note, tuple(names))
