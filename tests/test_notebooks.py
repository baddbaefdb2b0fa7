"""Every notebook of the book, executed in the ``smoke`` profile with nbval (``--nbval-lax``).

The copy under test is built from the current ``notebooks/NAME.py`` with the smoke parameters
injected. Cells tagged ``nbval-check-output`` print deterministic checks; they carry the outputs
of the committed ``cpu`` notebook (``book/generated/NAME.ipynb``, matched by identical source), so
nbval compares what smoke prints now with what the book shows. All other cells must only run.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from cmmd import book
from cmmd.data import load_fashion_mnist, load_materials, random_ellipse_phantoms
from cmmd.data.cifar import CIFAR10_DIRNAME, CIFAR10_FILES
from cmmd.experiments import get_config
from tests.test_data import write_idx

ROOT = Path(__file__).resolve().parents[1]
NAMES = book.notebook_names(ROOT / "notebooks")
MARK = "nbval-check-output"  # nbval's cell tag: compare this cell's output (invisible in the book)


def marked_cell(cell) -> bool:
    """Whether a code cell is tagged for nbval to check its output."""
    return cell.cell_type == "code" and MARK in cell.metadata.get("tags", [])


def missing_data(name: str) -> str | None:
    """Why a chapter cannot run on this machine (its data are not here), or None.

    Chapter 6 needs the authors' SiC images ($CMMD_DATA_DIR or a local copy, [method §7]); without them it raises
    FileNotFoundError by design, and the smoke test is skipped rather than run on other data.
    """
    if name != "06_superresolution":
        return None
    try:
        load_materials("test", download=False)
        load_materials("train", n=1, download=False)
    except FileNotFoundError as error:
        return f"{name} needs the SiC materials images, which are not on this machine: {error}"
    return None


def smoke_copy(name: str, directory: Path, extra: dict | None = None) -> tuple[Path, Path, int, int]:
    """Write the smoke-profile test copy of a notebook (``extra``: more parameters; then no reference outputs).

    Returns (notebook path, results path, cells marked for checking, of which have a reference).
    """
    results = directory / f"{name}.results.json"
    nb = book.load_notebook(ROOT / "notebooks" / f"{name}.py")
    params = {"profile": "smoke", "device": "cpu", "seed": 0, "results_path": str(results)}
    nb = book.parameterize(nb, params | (extra or {}))
    reference_path = ROOT / "book" / "generated" / f"{name}.ipynb"
    reference = {}
    if reference_path.exists() and not extra:
        executed = nbformat.read(reference_path, as_version=4)
        reference = {c.source: c for c in executed.cells if marked_cell(c)}
    marked = checked = 0
    for count, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.outputs, cell.execution_count = [], None
        ref = reference.get(cell.source)
        marked += marked_cell(cell)
        if marked_cell(cell) and ref is not None:
            cell.outputs, cell.execution_count = ref.outputs, count + 1
            checked += 1
    path = directory / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path, results, marked, checked


def run_nbval(name: str, path: Path, results: Path, cwd: Path, env: dict | None = None) -> dict:
    """Execute a test copy with nbval; return its results file after checking its ledger rows."""
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), **(env or {})}
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
            "--nbval-cell-timeout=300", "-p", "no:cacheprovider", "-q", "--rootdir", str(cwd),
            str(path),
        ],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=900,
    )
    assert proc.returncode == 0, f"nbval failed for {name}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    # The chapter's headline figures come back as valid ledger rows of the smoke profile.
    data = json.loads(results.read_text())
    assert book.validate_ledger(data["ledger"], profile="smoke")
    return data


#: Chapters that show FashionMNIST beside MNIST (without it they say so and show MNIST only).
USES_FASHION_MNIST = ("04_class_conditional", "05_inpainting")


def fashion_mnist_offline() -> bool:
    """Whether the real FashionMNIST is on this machine (``$CMMD_DATA_DIR``, the cache or the Debian package)."""
    try:
        load_fashion_mnist("test", n=1, download=False)
    except FileNotFoundError:
        return False
    return True


def write_stand_in_fashion_mnist(root: Path, n_train: int = 2000, n_test: int = 200, seed: int = 0) -> None:
    """Random 28×28 images and labels as FashionMNIST's gzip IDX files under ``root/fashion-mnist``."""
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        write_idx(root / "fashion-mnist" / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
        write_idx(root / "fashion-mnist" / f"{prefix}-labels-idx1-ubyte.gz",
                  rng.integers(0, 10, count, dtype=np.uint8))


def data_env(name: str, root: Path) -> dict[str, str]:
    """The environment of a smoke run: ``CMMD_DATA_DIR`` at ``root``, holding stand-in FashionMNIST files where
    the chapter uses it and the real set is not on this machine (so its code path runs offline, without a
    download); the chapter's real-data path is what the ``cpu`` book shows."""
    if name in USES_FASHION_MNIST and not fashion_mnist_offline():
        write_stand_in_fashion_mnist(root)
    return {"CMMD_DATA_DIR": str(root)}


def write_stand_in_cifar10(root: Path, per_file: int = 500, seed: int = 0) -> None:
    """Random images in CIFAR-10's binary format (label byte + 3,072 pixel bytes per record) under
    ``root/cifar-10-batches-bin``: enough to run the chapters' CIFAR-10 path where the real data are absent."""
    rng = np.random.default_rng(seed)
    directory = root / CIFAR10_DIRNAME
    directory.mkdir(parents=True)
    for names in CIFAR10_FILES.values():
        for file in names:
            labels = rng.integers(0, 10, (per_file, 1), dtype=np.uint8)
            pixels = rng.integers(0, 256, (per_file, 3 * 32 * 32), dtype=np.uint8)
            (directory / file).write_bytes(np.concatenate([labels, pixels], 1).tobytes())


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("name", ["04_class_conditional", "05_inpainting"])
def test_cifar10_path_trains_the_pyramid_on_a_stand_in_data_set(name, tmp_path):
    """The `paper` profile's CIFAR-10 path (a four-level pyramid, colour images), run in smoke settings on
    random stand-in images in CMMD_DATA_DIR: the chapter trains, samples, scores and reports CIFAR-10."""
    write_stand_in_cifar10(tmp_path / "data")
    path, results, _, _ = smoke_copy(name, tmp_path, extra={"run_cifar10": True})
    data = run_nbval(name, path, results, tmp_path, env=data_env(name, tmp_path / "data"))
    experiment = {"04_class_conditional": "cifar10-classcond", "05_inpainting": "cifar10-inpainting"}[name]
    assert experiment in {row["experiment"] for row in data["ledger"]}
    assert data["metrics"]["cifar10"] == "run"


def write_stand_in_lodopab(root: Path, n_train: int, n_test: int = 8, n_validation: int = 4) -> None:
    """Ellipse phantoms of 362×362 in LoDoPaB-CT's HDF5 layout (dataset "data" of float32 images in [0, 1])
    under ``root/lodopab``: enough to run chapter 7's LoDoPaB path where the real data are absent (training,
    test and validation splits, the smoke profile's sizes)."""
    h5py = pytest.importorskip("h5py")
    directory = root / "lodopab"
    directory.mkdir(parents=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1), ("validation", n_validation, 2)):
        images = random_ellipse_phantoms(n, 362, generator=torch.Generator().manual_seed(seed))[:, 0]
        with h5py.File(directory / f"ground_truth_{split}_000.hdf5", "w") as file:
            file.create_dataset("data", data=images.numpy())


@pytest.mark.notebooks
@pytest.mark.slow
def test_lodopab_path_of_the_ct_chapter_on_a_stand_in_data_set(tmp_path):
    """The `paper` profile's data path of chapter 7 (LoDoPaB-CT ground truth, resized to the profile's grid),
    run in smoke settings on stand-in files in CMMD_DATA_DIR: it trains, samples and scores both settings."""
    write_stand_in_lodopab(tmp_path / "data", get_config("ct-lowdose", "smoke").n_train)
    path, results, _, _ = smoke_copy("07_computed_tomography", tmp_path, extra={"dataset": "lodopab"})
    data = run_nbval("07_computed_tomography", path, results, tmp_path, env={"CMMD_DATA_DIR": str(tmp_path / "data")})
    assert data["metrics"]["data"].startswith("training: the first LoDoPaB-CT training images")
    assert data["metrics"]["ct-lowdose"]["validation"]["images"] == [f"LoDoPaB validation {j}" for j in range(4)]
    assert data["metrics"]["ct-lowdose"]["n_test"] == 8 and data["metrics"]["ct-lowdose"]["attenuation"] == 1.0


def write_stand_in_celeba(root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """Random 218×178 RGB JPEGs in CelebA's layout (``celeba/img_align_celeba.zip`` and
    ``celeba/list_eval_partition.txt``): enough to run chapter 6's CelebA path where the real data are absent."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    directory = root / "celeba"
    directory.mkdir(parents=True)
    lines = []
    with zipfile.ZipFile(directory / "img_align_celeba.zip", "w") as archive:
        for index in range(n_train + n_test):
            name = f"{index + 1:06d}.jpg"
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(buffer, format="JPEG")
            archive.writestr(f"img_align_celeba/{name}", buffer.getvalue())
            lines.append(f"{name} {0 if index < n_train else 2}")
    (directory / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.notebooks
@pytest.mark.slow
def test_celeba_path_of_the_superresolution_chapter_on_a_stand_in_data_set(tmp_path):
    """The `paper` profile's CelebA path of chapter 6 (a four-level pyramid on colour faces), run in smoke
    settings on stand-in files in CMMD_DATA_DIR: it trains, samples, scores and writes the ledger rows."""
    reason = missing_data("06_superresolution")
    if reason is not None:
        pytest.skip(reason)
    write_stand_in_celeba(tmp_path / "data", get_config("celeba-superres", "smoke").n_train, 2)
    path, results, _, _ = smoke_copy("06_superresolution", tmp_path, extra={"run_celeba": True})
    data = run_nbval("06_superresolution", path, results, tmp_path, env={"CMMD_DATA_DIR": str(tmp_path / "data")})
    assert data["metrics"]["celeba"] == "run"
    rows = {(row["experiment"], row["metric"]) for row in data["ledger"]}
    assert {("celeba-superres", "psnr-mean"), ("celeba-superres", "ssim-mean")} <= rows


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_smoke_profile(name, tmp_path):
    reason = missing_data(name)
    if reason is not None:
        pytest.skip(reason)
    path, results, marked, checked = smoke_copy(name, tmp_path)
    data = run_nbval(name, path, results, tmp_path, env=data_env(name, tmp_path / "data"))
    assert data["ledger"], f"{name} wrote no ledger rows"
    assert checked == marked, (
        f"{name}: {marked - checked} of {marked} cells tagged {MARK} have no committed output to "
        f"compare with; run `python -m cmmd.book {name}` (or `make book`)"
    )


@pytest.mark.notebooks
@pytest.mark.slow
def test_a_chapter_run_again_with_checkpoint_dir_resumes_and_gives_the_same_numbers(tmp_path):
    """Chapter 2 with ``checkpoint_dir``: the first run writes a checkpoint per fit; the second run (a Colab
    user after a disconnect) reads the finished fits back instead of training and reports the same numbers."""
    name = "02_toy_posteriors"
    folder = tmp_path / "checkpoints"
    outcomes = []
    for run in ("first", "again"):
        directory = tmp_path / run
        directory.mkdir()
        path, results, _, _ = smoke_copy(name, directory, extra={"checkpoint_dir": str(folder)})
        outcomes.append(run_nbval(name, path, results, directory, env=data_env(name, directory / "data")))
        assert {"02-full", "02-sum"} <= {p.parent.name for p in folder.rglob("checkpoint.pt")}
    first, again = outcomes
    assert first["ledger"] == again["ledger"]
    assert without_timings(first["metrics"]) == without_timings(again["metrics"])


def without_timings(value):
    """``value`` (nested dicts and lists) without the entries whose key names a duration (``*seconds*``)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if "second" not in k}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value
