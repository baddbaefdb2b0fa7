"""LoDoPaB-CT: low-dose parallel-beam CT pairs (Leuschner et al., Sci. Data 2021; CC BY 4.0).

Zenodo record 3384092 (https://zenodo.org/records/3384092) holds six zip archives,
``{ground_truth,observation}_{train,validation,test}.zip``. Each archive holds HDF5 files
``<kind>_<split>_<k:03d>.hdf5`` with one dataset ``"data"`` of 128 samples (the last file of a split
fewer): ground truth (128, 362, 362) float32, normalised to [0, 1] (attenuation divided by that of
3071 HU), and post-log low-dose observations (128, 1000, 513) float32 (1000 angles, 513 detector
pixels, Poisson noise for 4096 photons per pixel), in the data set's normalised units.
Split sizes: 35,820 train, 3,522 validation, 3,553 test (the data descriptor; dival's
``LoDoPaBDataset``).

Files are read from ``<local data dir>/lodopab/`` (``$CMMD_DATA_DIR``, else ``~/.cache/cmmd``): only
the files, and the rows, that the first ``n`` samples need. Row counts are read from the files, not
assumed.
"""

from __future__ import annotations

import http.client
import json
import shutil
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmmd._checks import check_positive_int
from cmmd.data._common import (
    DOWNLOAD_TIMEOUT_S,
    DownloadError,
    ImageDataset,
    check_n,
    check_split,
    fetch,
    local_dir,
    not_found,
    set_aside,
)

LODOPAB_CREDIT = ("LoDoPaB-CT (Leuschner, Schmidt, Otero Baguer and Maass, Sci. Data 8, 109, 2021; "
                  "Zenodo record 3384092; CC BY 4.0), simulated from LIDC-IDRI scans.")
LODOPAB_RECORD = "3384092"
LODOPAB_URL = "https://zenodo.org/records/3384092/files/{name}?download=1"
#: Zenodo's record API: its ``files`` list gives ``key`` (archive name) and ``checksum`` ("md5:…").
LODOPAB_API = "https://zenodo.org/api/records/3384092"
LODOPAB_DIRNAME = "lodopab"
LODOPAB_SPLITS = ("train", "validation", "test")
#: Samples per split (Leuschner et al. 2021; dival's ``LoDoPaBDataset.train_len`` etc.).
LODOPAB_SPLIT_SIZES = {"train": 35_820, "validation": 3_522, "test": 3_553}
LODOPAB_SAMPLES_PER_FILE = 128
LODOPAB_IMAGE_SHAPE = (362, 362)
LODOPAB_SINOGRAM_SHAPE = (1000, 513)
_SHAPES = {"ground_truth": LODOPAB_IMAGE_SHAPE, "observation": LODOPAB_SINOGRAM_SHAPE}
_RANGE_TOLERANCE = 1e-3  # ground truth outside [-tol, 1 + tol] is not LoDoPaB's normalised data


def lodopab_file(kind: str, split: str, index: int) -> str:
    """Name of the ``index``-th HDF5 file of ``kind`` (``"ground_truth"``/``"observation"``) and ``split``."""
    return f"{kind}_{split}_{index:03d}.hdf5"


def lodopab_archive(kind: str, split: str) -> str:
    """Name of the Zenodo archive holding every ``kind`` file of ``split``."""
    return f"{kind}_{split}.zip"


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as error:
        raise ImportError("reading LoDoPaB-CT (HDF5 files) needs h5py: pip install h5py") from error
    return h5py


def _rows(h5py: Any, path: Path, kind: str) -> int:
    """Number of samples in one file, after checking that ``"data"`` has LoDoPaB's sample shape."""
    try:
        with h5py.File(path, "r") as file:
            if "data" not in file:
                raise ValueError(f"{path} has no dataset 'data': not a LoDoPaB-CT file")
            shape = tuple(file["data"].shape)
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 file ({error}); delete it to fetch it again") from error
    if len(shape) != 3 or shape[1:] != _SHAPES[kind]:
        raise ValueError(f"{path}: 'data' has shape {shape}, expected (rows, {', '.join(map(str, _SHAPES[kind]))})")
    return shape[0]


def _plan(h5py: Any, directory: Path, kind: str, split: str, count: int) -> tuple[list[tuple[Path, int]], Path | None]:
    """Files and row counts that hold the first ``count`` samples, and the first missing file (or ``None``)."""
    plan, have, index = [], 0, 0
    while have < count:
        path = directory / lodopab_file(kind, split, index)
        if not path.is_file():
            return plan, path
        take = min(_rows(h5py, path, kind), count - have)
        plan.append((path, take))
        have += take
        index += 1
    return plan, None


def _check_values(values: np.ndarray, path: Path, kind: str) -> None:
    """Raise ``ValueError`` naming ``path`` if ``values`` read from it hold NaN or inf, or (ground truth) lie
    outside [-0.001, 1.001], LoDoPaB's normalised range."""
    fix = "delete the file (it is extracted again from its archive or downloaded) or restore the original"
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.reshape(len(values), -1).all(1))[0])
        raise ValueError(f"{path} holds NaN or inf values (first in row {bad}): it is corrupt; {fix}")
    if kind == "ground_truth":
        low, high = float(values.min()), float(values.max())
        if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
            raise ValueError(f"{path} holds ground truth in [{low:.4g}, {high:.4g}], not [0, 1]: these are not "
                             f"the data set's normalised images; {fix}")


def _zenodo_md5(name: str) -> str:
    """The md5 of archive ``name`` as the Zenodo record API lists it; :class:`DownloadError` if unknown."""
    try:
        with urllib.request.urlopen(LODOPAB_API, timeout=DOWNLOAD_TIMEOUT_S) as response:
            record = json.load(response)
    except (OSError, ValueError, http.client.HTTPException) as error:
        raise DownloadError(f"could not read the md5 of {name} from {LODOPAB_API} ({error}); "
                            f"without a checksum the archive is not downloaded") from error
    files = record.get("files") if isinstance(record, dict) else None
    if isinstance(files, dict) and isinstance(files.get("entries"), dict):  # InvenioRDM's own layout
        files = list(files["entries"].values())
    for entry in files if isinstance(files, list) else []:
        if isinstance(entry, dict) and entry.get("key") == name:
            checksum = str(entry.get("checksum", ""))
            if checksum.startswith("md5:") and len(checksum) == 36:
                return checksum[4:]
            raise DownloadError(f"{LODOPAB_API} gives {name} the checksum {checksum!r}, not 'md5:<32 hex digits>'")
    raise DownloadError(f"{LODOPAB_API} lists no file {name}, so its md5 is unknown and it is not downloaded")


def _extract(h5py: Any, archive: Path, directory: Path, kind: str, split: str, count: int) -> None:
    """Extract from ``archive`` the missing files that hold the first ``count`` samples.

    Each member goes to ``<name>.part`` and is renamed when complete (zipfile checks its CRC as it reads).
    An archive that is not a readable zip file, or whose member is damaged, is set aside as
    ``<name>.corrupt`` with a warning (:func:`~cmmd.data._common.set_aside`), so that a download can
    replace it, and :class:`DownloadError` is raised; so is a missing member.
    """
    part = None
    try:
        with zipfile.ZipFile(archive) as zf:
            members = {Path(info.filename).name: info for info in zf.infolist() if not info.is_dir()}
            have, index = 0, 0
            while have < count:
                name = lodopab_file(kind, split, index)
                target = directory / name
                if not target.is_file():
                    if name not in members:
                        raise DownloadError(f"{archive} has no member {name}")
                    part = target.with_name(name + ".part")
                    with zf.open(members[name]) as source, part.open("wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
                    part.replace(target)
                have += _rows(h5py, target, kind)
                index += 1
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        if part is not None:
            part.unlink(missing_ok=True)
        set_aside(archive, f"is not a readable zip archive ({type(error).__name__}: {error})")
        raise DownloadError(f"{archive} was corrupt ({type(error).__name__}: {error}) and was set aside") from None


def _read(kind: str, split: str, n: int | None, download: bool) -> tuple[np.ndarray, str, int]:
    """The first ``n`` samples of ``kind`` as one float32 array, its source, and the number of files read."""
    check_split(split, LODOPAB_SPLITS)
    if n is not None:
        check_positive_int("n", n)
    count = check_n(n, LODOPAB_SPLIT_SIZES[split], f"the LoDoPaB-CT {split} split")
    h5py = _import_h5py()
    root, source_kind = local_dir()
    directory = root / LODOPAB_DIRNAME
    archive_name = lodopab_archive(kind, split)
    url = LODOPAB_URL.format(name=archive_name)
    plan, missing = _plan(h5py, directory, kind, split, count)
    download_error = None
    if missing is not None:
        archive = directory / archive_name
        try:
            if archive.is_file():
                try:
                    _extract(h5py, archive, directory, kind, split, count)
                except DownloadError:
                    if archive.is_file() or not download:  # kept (a member is missing) or no download allowed
                        raise
            if not archive.is_file() and download:  # none there, or a corrupt one was set aside
                fetch([url], archive, checksum=("md5", _zenodo_md5(archive_name)))
                source_kind = "download"
                _extract(h5py, archive, directory, kind, split, count)
        except DownloadError as error:
            download_error = str(error)
        plan, missing = _plan(h5py, directory, kind, split, count)
    if missing is not None:
        last = -(-count // LODOPAB_SAMPLES_PER_FILE) - 1
        files = lodopab_file(kind, split, 0) if last == 0 else (
            f"{lodopab_file(kind, split, 0)} ... {lodopab_file(kind, split, last)}")
        raise not_found(
            f"LoDoPaB-CT {kind.replace('_', ' ')} ({split} split, n={count})",
            missing=(f"{LODOPAB_DIRNAME}/{files} (128 samples per file; first missing: {missing.name}) "
                     f"or the archive {LODOPAB_DIRNAME}/{archive_name}"),
            offline="there is no offline copy of LoDoPaB-CT (no package ships it)",
            urls=[url, LODOPAB_API + " (md5)"], download_error=download_error)
    out = np.empty((count, *_SHAPES[kind]), dtype=np.float32)
    have = 0
    for path, rows in plan:
        with h5py.File(path, "r") as file:
            out[have:have + rows] = file["data"][:rows]
        _check_values(out[have:have + rows], path, kind)
        have += rows
    return out, f"{source_kind}: {directory}", len(plan)


def load_lodopab(split: str = "train", *, n: int | None = None, download: bool = True) -> ImageDataset:
    """LoDoPaB-CT ground truth: images (N, 1, 362, 362) float32 in [0, 1], in the data set's order.

    The images are already normalised to [0, 1] in the files; NaN, inf or values outside [-0.001, 1.001]
    raise ``ValueError`` naming the file (corrupt, or not LoDoPaB's ground truth), smaller excursions are
    clamped. An archive that is not a readable zip is set aside as ``<name>.corrupt`` (with a warning) and
    downloaded again when ``download`` allows. ``result.labels`` is
    ``None``. The paper trains on the first 500 training pairs (``n=500``). The matching low-dose
    sinograms: :func:`load_lodopab_observations` with the same ``split`` and ``n``.

    Sources, in order: ``$CMMD_DATA_DIR/lodopab/ground_truth_<split>_<k:03d>.hdf5`` (or
    ``~/.cache/cmmd/lodopab/...`` when unset), reading only the files and rows the first ``n`` need →
    the archive ``lodopab/ground_truth_<split>.zip`` if present there → download of that archive from
    Zenodo (:data:`LODOPAB_URL`; its md5 is read from :data:`LODOPAB_API` at download time and checked)
    → :class:`FileNotFoundError`. Only the HDF5 members the first ``n`` need are extracted. The archives
    are several GB each (the whole data set is about 115 GB unpacked), although the first 500 training
    pairs need only the first 4 of the 280 training files; the archive is kept so that a larger ``n``
    later needs no new download (delete it to free the space). There is no offline copy.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        n: take the first ``n`` samples (``None``: the whole split, 35,820 / 3,522 / 3,553).
        download: allow the download step (``False``: never touch the network).

    Raises:
        ImportError: h5py is not installed (``pip install h5py``).
        ValueError: bad arguments, or a file that is not LoDoPaB-CT data.
        FileNotFoundError: the files are missing and no archive or download supplied them.
    """
    images, source, files = _read("ground_truth", split, n, download)  # values checked per file
    tensor = torch.from_numpy(images).unsqueeze(1).clamp_(0.0, 1.0)
    note = (f"LoDoPaB-CT ground truth, first {len(images)} of the {LODOPAB_SPLIT_SIZES[split]:,} images of the "
            f"{split} split ({files} file(s) ground_truth_{split}_*.hdf5), 362x362. {LODOPAB_CREDIT}")
    return ImageDataset(tensor, None, source, note)


def load_lodopab_observations(split: str = "train", *, n: int | None = None, download: bool = True) -> torch.Tensor:
    """LoDoPaB-CT post-log low-dose sinograms (N, 1000, 513) float32, paired with :func:`load_lodopab`.

    Values are as stored (``-log`` of the normalised photon counts divided by the attenuation factor of
    the ground truth, so that ``observation ≈ ray_transform(ground_truth) + noise``); they are not
    rescaled; NaN or inf raise ``ValueError`` naming the file. Files
    ``lodopab/observation_<split>_<k:03d>.hdf5``, their archive ``lodopab/observation_<split>.zip`` or its
    download, exactly as for :func:`load_lodopab` (the training observations archive is the largest of
    the record).

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        n: take the first ``n`` samples (``None``: the whole split).
        download: allow the download step (``False``: never touch the network).
    """
    sinograms, _, _ = _read("observation", split, n, download)
    return torch.from_numpy(sinograms)
