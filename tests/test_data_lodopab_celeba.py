"""Tests of the CelebA and LoDoPaB-CT loaders on small stand-in files in the real formats.

No test uses the network: an autouse fixture points $CMMD_DATA_DIR at an empty temporary directory and
makes every URL fail; download tests serve bytes from a dictionary. The stand-ins are a zip of random
178×218 JPEGs with a ``list_eval_partition.txt``, and HDF5 files with a ``"data"`` dataset of LoDoPaB's
sample shapes but only a few rows per file.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cmmd.data as data
from cmmd.data import celeba, lodopab

h5py = pytest.importorskip("h5py")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def offline(offline_data):
    """Every test of this module runs offline (tests.conftest.offline_data); returns the data directory."""
    return offline_data


class NetworkTouched(Exception):
    """Raised by the patched download functions in tests that must not download (not an OSError)."""


@pytest.fixture
def forbid_network(monkeypatch):
    """Any download attempt (fetch of either loader, or urlopen) raises :class:`NetworkTouched`."""
    def touched(*args, **kwargs):
        raise NetworkTouched(f"network used: {args}")

    monkeypatch.setattr(urllib.request, "urlopen", touched)
    monkeypatch.setattr(celeba, "fetch", touched)
    monkeypatch.setattr(lodopab, "fetch", touched)


def serve(monkeypatch, files: dict[str, bytes]) -> list[str]:
    """Make urlopen return ``files[url]`` (and fail for any other URL); returns the list of URLs asked."""
    asked = []

    def fake_urlopen(url, *args, **kwargs):
        asked.append(url)
        if url not in files:
            raise urllib.error.URLError(f"no such url in test: {url}")
        return io.BytesIO(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return asked


# ----------------------------------------------------------------------------- CelebA stand-ins

# Split of the stand-in images: not contiguous, and the partition file lists them out of order.
SPLIT_OF = {"000001.jpg": 0, "000002.jpg": 0, "000003.jpg": 1, "000004.jpg": 0, "000005.jpg": 2,
            "000006.jpg": 0, "000007.jpg": 1, "000008.jpg": 2, "000009.jpg": 0}
EXPECTED = {split: sorted(name for name, code in SPLIT_OF.items() if code == number)
            for number, split in enumerate(("train", "valid", "test"))}


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def random_face(seed: int, shape: tuple[int, ...] = (218, 178, 3)) -> bytes:
    """A 178-wide, 218-high RGB JPEG: smooth gradients plus noise, so bicubic resizing overshoots."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.linspace(0, 1, shape[0]), np.linspace(0, 1, shape[1]), indexing="ij")
    base = 255 * (rows if seed % 2 else cols)
    if len(shape) == 3:
        base = base[..., None]
    pixels = np.clip(base + rng.normal(0, 60, shape), 0, 255).astype(np.uint8)
    return jpeg_bytes(pixels)


def write_celeba(root: Path, *, layout: str = "zip", images: dict[str, bytes] | None = None,
                 partition: dict[str, int] | None = None) -> dict[str, bytes]:
    """Write ``celeba/`` stand-ins under ``root``; returns the JPEG bytes by file name."""
    images = images if images is not None else {name: random_face(i) for i, name in enumerate(SPLIT_OF)}
    partition = partition if partition is not None else SPLIT_OF
    directory = root / "celeba"
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"{name} {code}" for name, code in partition.items()]
    lines = lines[1::2] + lines[::2]  # out of file-name order
    (directory / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    if layout == "zip":
        with zipfile.ZipFile(directory / "img_align_celeba.zip", "w") as zf:
            zf.writestr("img_align_celeba/", b"")
            for name, content in images.items():
                zf.writestr(f"img_align_celeba/{name}", content)
    else:
        (directory / "img_align_celeba").mkdir(exist_ok=True)
        for name, content in images.items():
            (directory / "img_align_celeba" / name).write_bytes(content)
    return images


def reference(content: bytes, size: int, *, clamp: bool = True) -> torch.Tensor:
    """Independent preprocessing: PIL decode → numpy crop → float / 255 → torch bicubic (→ clamp)."""
    pixels = np.asarray(Image.open(io.BytesIO(content)))  # (218, 178, 3) uint8
    crop = pixels[39:218 - 39, 19:178 - 19].astype(np.float32) / 255
    assert crop.shape == (140, 140, 3)
    tensor = torch.from_numpy(crop).permute(2, 0, 1)[None]
    out = F.interpolate(tensor, size=[size, size], mode="bicubic", align_corners=False)
    return out.clamp(0, 1)[0] if clamp else out[0]


# ----------------------------------------------------------------------------- CelebA tests

def test_celeba_splits_in_file_name_order_and_n(offline):
    write_celeba(offline)
    for split, names in EXPECTED.items():
        ds = data.load_celeba(split, download=False)
        assert ds.names == tuple(names)
        assert tuple(ds.images.shape) == (len(names), 3, 64, 64) and ds.images.dtype == torch.float32
        assert float(ds.images.min()) >= 0 and float(ds.images.max()) <= 1
        assert ds.labels is None
        assert ds.source == f"CMMD_DATA_DIR: {offline / 'celeba' / 'img_align_celeba.zip'}"
        assert split in ds.note and "non-commercial" in ds.note and "Liu et al., ICCV 2015" in ds.note
    first = data.load_celeba("train", n=2, download=False)
    assert first.names == tuple(EXPECTED["train"][:2]) and tuple(first.images.shape) == (2, 3, 64, 64)
    assert torch.equal(first.images, data.load_celeba("train", download=False).images[:2])


def test_celeba_reads_only_the_first_n(offline):
    images = {name: random_face(i) for i, name in enumerate(SPLIT_OF)}
    images["000006.jpg"] = b"not a jpeg"  # 4th train image: never decoded for n <= 3
    write_celeba(offline, images=images)
    assert len(data.load_celeba("train", n=3, download=False)) == 3
    with pytest.raises(ValueError, match="000006.jpg is not a readable image"):
        data.load_celeba("train", n=4, download=False)


def test_celeba_preprocessing_matches_an_independent_computation(offline):
    images = write_celeba(offline)
    names = EXPECTED["train"]
    ds = data.load_celeba("train", download=False)
    expected = torch.stack([reference(images[name], 64) for name in names])
    assert torch.equal(ds.images, expected)
    # The stand-ins do overshoot [0, 1] under bicubic resizing, so the clamp is exercised.
    raw = torch.stack([reference(images[name], 64, clamp=False) for name in names])
    assert float(raw.min()) < 0 or float(raw.max()) > 1
    # size=140 is the identity of bicubic interpolation: exactly the crop rows 39:-39, columns 19:-19.
    crop = data.load_celeba("valid", n=1, size=140, download=False).images[0]
    pixels = np.asarray(Image.open(io.BytesIO(images[EXPECTED["valid"][0]])))
    assert torch.equal(crop, torch.from_numpy(pixels[39:179, 19:159].astype(np.float32) / 255).permute(2, 0, 1))
    small = data.load_celeba("test", size=16, download=False)
    assert torch.equal(small.images, torch.stack([reference(images[name], 16) for name in EXPECTED["test"]]))


def test_celeba_extracted_folder_equals_zip(offline, tmp_path, monkeypatch):
    images = write_celeba(offline, layout="zip")
    from_zip = data.load_celeba("train", download=False)
    folder_root = tmp_path / "folder"
    write_celeba(folder_root, layout="folder", images=images)
    monkeypatch.setenv("CMMD_DATA_DIR", str(folder_root))
    from_folder = data.load_celeba("train", download=False)
    assert torch.equal(from_zip.images, from_folder.images) and from_zip.names == from_folder.names
    assert from_folder.source.endswith("img_align_celeba")


@pytest.mark.parametrize("bad", ["size", "grey"])
def test_celeba_wrong_image_is_a_clear_error(offline, bad):
    images = {name: random_face(i) for i, name in enumerate(SPLIT_OF)}
    images["000002.jpg"] = random_face(0, (100, 120, 3)) if bad == "size" else random_face(0, (218, 178))
    write_celeba(offline, images=images)
    message = "000002.jpg is 100x120 pixels" if bad == "size" else "000002.jpg is 218x178 pixels in mode L"
    with pytest.raises(ValueError, match=message):
        data.load_celeba("train", download=False)
    data.load_celeba("train", n=1, download=False)  # the first image alone is fine


def test_celeba_image_missing_from_the_archive(offline):
    images = {name: random_face(i) for i, name in enumerate(SPLIT_OF) if name != "000004.jpg"}
    write_celeba(offline, images=images)
    with pytest.raises(FileNotFoundError, match="no member 000004.jpg"):
        data.load_celeba("train", download=False)


def test_celeba_missing_files_name_every_option(offline):
    with pytest.raises(FileNotFoundError) as error:
        data.load_celeba(download=False)
    message = str(error.value)
    assert "$CMMD_DATA_DIR" in message and str(offline) in message
    assert "celeba/list_eval_partition.txt" in message and "celeba/img_align_celeba.zip" in message
    assert "download=False" in message and "no offline copy" in message
    for file_id, _ in data.CELEBA_FILES.values():
        assert data.CELEBA_URL.format(id=file_id) in message
    # The archive alone is not enough: the partition file is needed too.
    write_celeba(offline)
    (offline / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(FileNotFoundError, match="list_eval_partition.txt"):
        data.load_celeba(download=False)


def test_celeba_failed_download_falls_through(offline):
    with pytest.raises(FileNotFoundError) as error:
        data.load_celeba("test", n=2)  # download=True, but the network is off
    message = str(error.value)
    assert "download failed" in message and "network disabled" in message
    assert "drive.usercontent.google.com" in message
    assert not list(offline.rglob("*.*"))  # no partial file is left


def test_celeba_present_files_are_used_without_download(offline, forbid_network):
    write_celeba(offline)
    assert len(data.load_celeba("train", n=2)) == 2  # download=True, but nothing is missing
    (offline / "celeba" / "img_align_celeba.zip").unlink()
    with pytest.raises(FileNotFoundError):
        data.load_celeba("train", download=False)  # download=False: no fetch, the error
    with pytest.raises(NetworkTouched):  # the patch is live: download=True does reach it
        data.load_celeba("train")


def test_celeba_download_is_md5_checked(offline, tmp_path, monkeypatch):
    images = write_celeba(tmp_path / "served")
    served, files = {}, {}
    for name, (file_id, _) in data.CELEBA_FILES.items():
        content = (tmp_path / "served" / "celeba" / name).read_bytes()
        served[data.CELEBA_URL.format(id=file_id)] = content
        files[name] = (file_id, hashlib.md5(content).hexdigest())
    monkeypatch.setattr(celeba, "CELEBA_FILES", files)
    serve(monkeypatch, served)
    ds = data.load_celeba("valid")
    assert ds.source.startswith("download:") and ds.names == tuple(EXPECTED["valid"])
    assert torch.equal(ds.images, torch.stack([reference(images[name], 64) for name in EXPECTED["valid"]]))
    assert (offline / "celeba" / "img_align_celeba.zip").is_file()
    serve(monkeypatch, {})
    assert data.load_celeba("valid", download=False).source.startswith("CMMD_DATA_DIR")
    # A wrong checksum leaves no file and reaches the FileNotFoundError.
    monkeypatch.setenv("CMMD_DATA_DIR", str(tmp_path / "other"))
    monkeypatch.setattr(celeba, "CELEBA_FILES", {name: (fid, "0" * 32) for name, (fid, _) in files.items()})
    serve(monkeypatch, served)
    with pytest.raises(FileNotFoundError, match="md5"):
        data.load_celeba("valid")
    assert not list((tmp_path / "other" / "celeba").glob("*"))


def test_celeba_bad_arguments(offline):
    write_celeba(offline)
    with pytest.raises(ValueError, match="'train', 'valid', 'test'"):
        data.load_celeba("validation", download=False)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n must be an integer"):
            data.load_celeba("train", n=bad, download=False)
        with pytest.raises(ValueError, match="size must be an integer"):
            data.load_celeba("train", n=1, size=bad, download=False)
    with pytest.raises(ValueError, match="n=6 but the CelebA train split"):
        data.load_celeba("train", n=6, download=False)
    (offline / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg train\n")
    with pytest.raises(ValueError, match="line 2"):
        data.load_celeba("train", download=False)


# ----------------------------------------------------------------------------- LoDoPaB stand-ins

def lodopab_rows(kind: str, rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (rows, 362, 362) if kind == "ground_truth" else (rows, 1000, 513)
    values = rng.random(shape, dtype=np.float32)
    return values if kind == "ground_truth" else 4 * values


def hdf5_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        file.create_dataset("data", data=array)
    return buffer.getvalue()


def write_lodopab(directory: Path, kind: str, split: str, rows: list[int], seed: int = 0) -> np.ndarray:
    """Files ``<kind>_<split>_000.hdf5 ...`` with the given row counts; returns all rows concatenated."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = []
    for index, count in enumerate(rows):
        array = lodopab_rows(kind, count, seed + index)
        with h5py.File(directory / f"{kind}_{split}_{index:03d}.hdf5", "w") as file:
            file.create_dataset("data", data=array)
        arrays.append(array)
    return np.concatenate(arrays)


def lodopab_zip(kind: str, split: str, rows: list[int], seed: int = 0) -> tuple[bytes, np.ndarray]:
    arrays, buffer = [], io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for index, count in enumerate(rows):
            arrays.append(lodopab_rows(kind, count, seed + index))
            zf.writestr(f"{kind}_{split}_{index:03d}.hdf5", hdf5_bytes(arrays[-1]))
    return buffer.getvalue(), np.concatenate(arrays)


# ----------------------------------------------------------------------------- LoDoPaB tests

def test_lodopab_ground_truth_across_a_file_boundary(offline):
    truth = write_lodopab(offline / "lodopab", "ground_truth", "train", [3, 3, 2])
    ds = data.load_lodopab("train", n=5, download=False)
    assert tuple(ds.images.shape) == (5, 1, 362, 362) and ds.images.dtype == torch.float32
    assert torch.equal(ds.images[:, 0], torch.from_numpy(truth[:5]))
    assert ds.labels is None and ds.source == f"CMMD_DATA_DIR: {offline / 'lodopab'}"
    assert "first 5" in ds.note and "train" in ds.note and "CC BY 4.0" in ds.note
    assert torch.equal(data.load_lodopab("train", n=8, download=False).images[:, 0], torch.from_numpy(truth))
    with pytest.raises(FileNotFoundError, match="first missing: ground_truth_train_003.hdf5"):
        data.load_lodopab("train", n=9, download=False)


def test_lodopab_reads_only_the_files_needed(offline):
    write_lodopab(offline / "lodopab", "ground_truth", "test", [3, 3])
    (offline / "lodopab" / "ground_truth_test_001.hdf5").write_bytes(b"not hdf5")
    assert len(data.load_lodopab("test", n=3, download=False)) == 3
    with pytest.raises(ValueError, match="ground_truth_test_001.hdf5 is not a readable HDF5 file"):
        data.load_lodopab("test", n=4, download=False)


def test_lodopab_observations(offline):
    sinograms = write_lodopab(offline / "lodopab", "observation", "validation", [2, 2], seed=7)
    obs = data.load_lodopab_observations("validation", n=3, download=False)
    assert isinstance(obs, torch.Tensor) and tuple(obs.shape) == (3, 1000, 513) and obs.dtype == torch.float32
    assert torch.equal(obs, torch.from_numpy(sinograms[:3]))
    assert float(obs.max()) > 1  # in the data set's units, not rescaled
    with pytest.raises(FileNotFoundError, match="ground_truth_validation_000.hdf5"):
        data.load_lodopab("validation", n=1, download=False)  # ground truth files are separate


def test_lodopab_whole_split(offline, monkeypatch):
    truth = write_lodopab(offline / "lodopab", "ground_truth", "test", [3, 1])
    monkeypatch.setitem(lodopab.LODOPAB_SPLIT_SIZES, "test", 4)
    assert torch.equal(data.load_lodopab("test", download=False).images[:, 0], torch.from_numpy(truth))
    with pytest.raises(ValueError, match="n=5"):
        data.load_lodopab("test", n=5, download=False)


def test_lodopab_missing_files_name_every_option(offline):
    with pytest.raises(FileNotFoundError) as error:
        data.load_lodopab("train", n=500, download=False)
    message = str(error.value)
    assert "$CMMD_DATA_DIR" in message and str(offline) in message
    assert "lodopab/ground_truth_train_000.hdf5 ... ground_truth_train_003.hdf5" in message
    assert "lodopab/ground_truth_train.zip" in message and "download=False" in message
    assert "https://zenodo.org/records/3384092/files/ground_truth_train.zip?download=1" in message
    with pytest.raises(FileNotFoundError, match="observation_test_000.hdf5"):
        data.load_lodopab_observations("test", n=1, download=False)


def test_lodopab_download_false_never_touches_the_network(offline, forbid_network):
    with pytest.raises(FileNotFoundError):
        data.load_lodopab("train", n=2, download=False)
    with pytest.raises(FileNotFoundError):
        data.load_lodopab_observations("train", n=2, download=False)
    with pytest.raises(NetworkTouched):  # the patch is live: download=True does reach it
        data.load_lodopab("train", n=2)


def test_lodopab_present_files_are_used_without_download(offline, forbid_network):
    truth = write_lodopab(offline / "lodopab", "ground_truth", "train", [2, 2])
    sinograms = write_lodopab(offline / "lodopab", "observation", "train", [2, 2], seed=3)
    assert torch.equal(data.load_lodopab("train", n=4).images[:, 0], torch.from_numpy(truth))
    assert torch.equal(data.load_lodopab_observations("train", n=3), torch.from_numpy(sinograms[:3]))


def test_lodopab_local_archive_is_extracted_without_download(offline, forbid_network):
    content, truth = lodopab_zip("ground_truth", "validation", [2, 2, 2])
    (offline / "lodopab").mkdir(parents=True)
    (offline / "lodopab" / "ground_truth_validation.zip").write_bytes(content)
    ds = data.load_lodopab("validation", n=3, download=False)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(truth[:3]))
    names = sorted(p.name for p in (offline / "lodopab").glob("*.hdf5"))
    assert names == ["ground_truth_validation_000.hdf5", "ground_truth_validation_001.hdf5"]


def test_lodopab_download_checks_the_zenodo_md5(offline, monkeypatch):
    content, truth = lodopab_zip("ground_truth", "test", [3, 3, 3])
    url = data.LODOPAB_URL.format(name="ground_truth_test.zip")
    record = {"files": [{"key": "observation_test.zip", "checksum": "md5:" + "1" * 32},
                        {"key": "ground_truth_test.zip", "checksum": "md5:" + hashlib.md5(content).hexdigest()}]}
    asked = serve(monkeypatch, {data.LODOPAB_API: json.dumps(record).encode(), url: content})
    ds = data.load_lodopab("test", n=4)
    assert asked == [data.LODOPAB_API, url]
    assert ds.source == f"download: {offline / 'lodopab'}"
    assert torch.equal(ds.images[:, 0], torch.from_numpy(truth[:4]))
    names = sorted(p.name for p in (offline / "lodopab").iterdir())
    assert names == ["ground_truth_test.zip", "ground_truth_test_000.hdf5", "ground_truth_test_001.hdf5"]
    serve(monkeypatch, {})  # later calls extract more from the kept archive, offline
    assert torch.equal(data.load_lodopab("test", n=9, download=False).images[:, 0], torch.from_numpy(truth))


def test_lodopab_download_failures(offline, monkeypatch):
    content, _ = lodopab_zip("observation", "test", [1])
    url = data.LODOPAB_URL.format(name="observation_test.zip")
    # The API is unreachable: no checksum, so the archive is not even requested.
    asked = serve(monkeypatch, {url: content})
    with pytest.raises(FileNotFoundError, match="could not read the md5 of observation_test.zip"):
        data.load_lodopab_observations("test", n=1)
    assert asked == [data.LODOPAB_API]
    # The same record in InvenioRDM's layout ("files": {"entries": {...}}) works too.
    entries = {"observation_test.zip": {"key": "observation_test.zip",
                                        "checksum": "md5:" + hashlib.md5(content).hexdigest()}}
    serve(monkeypatch, {data.LODOPAB_API: json.dumps({"files": {"entries": entries}}).encode(), url: content})
    assert tuple(data.load_lodopab_observations("test", n=1).shape) == (1, 1000, 513)
    for path in (offline / "lodopab").iterdir():
        path.unlink()
    # The API does not list the archive.
    serve(monkeypatch, {data.LODOPAB_API: b'{"files": []}', url: content})
    with pytest.raises(FileNotFoundError, match="lists no file observation_test.zip"):
        data.load_lodopab_observations("test", n=1)
    # A wrong md5: nothing is kept.
    record = {"files": [{"key": "observation_test.zip", "checksum": "md5:" + "0" * 32}]}
    serve(monkeypatch, {data.LODOPAB_API: json.dumps(record).encode(), url: content})
    with pytest.raises(FileNotFoundError, match="md5 [0-9a-f]{32} != expected 0{32}"):
        data.load_lodopab_observations("test", n=1)
    assert not list((offline / "lodopab").iterdir())


def test_lodopab_checks_the_files(offline):
    directory = offline / "lodopab"
    write_lodopab(directory, "ground_truth", "train", [2])
    with h5py.File(directory / "ground_truth_train_000.hdf5", "w") as file:
        file.create_dataset("data", data=np.zeros((2, 100, 100), np.float32))
    with pytest.raises(ValueError, match=r"shape \(2, 100, 100\), expected \(rows, 362, 362\)"):
        data.load_lodopab("train", n=1, download=False)
    with h5py.File(directory / "ground_truth_train_000.hdf5", "w") as file:
        file.create_dataset("images", data=np.zeros((2, 362, 362), np.float32))
    with pytest.raises(ValueError, match="no dataset 'data'"):
        data.load_lodopab("train", n=1, download=False)
    with h5py.File(directory / "ground_truth_train_000.hdf5", "w") as file:
        file.create_dataset("data", data=np.full((2, 362, 362), 1.5, np.float32))
    with pytest.raises(ValueError, match="not the data set's normalised images"):
        data.load_lodopab("train", n=1, download=False)
    with h5py.File(directory / "ground_truth_train_000.hdf5", "w") as file:  # tiny excursions: clamped
        file.create_dataset("data", data=np.full((2, 362, 362), 1.0005, np.float32))
    assert float(data.load_lodopab("train", n=1, download=False).images.max()) == 1.0


def test_lodopab_bad_arguments_and_missing_h5py(offline, monkeypatch):
    with pytest.raises(ValueError, match="'train', 'validation', 'test'"):
        data.load_lodopab("valid", download=False)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="n must be an integer"):
            data.load_lodopab_observations("train", n=bad, download=False)
    with pytest.raises(ValueError, match="n=3554"):
        data.load_lodopab("test", n=3554, download=False)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="pip install h5py"):
        data.load_lodopab("train", n=1, download=False)
