"""The SiC microstructure images of the paper's super-resolution experiment.

Their use in the paper: the book's page "Method and settings", book/method.md, §5.

30 training images ``train/slice*.png`` and one test image ``test/hr_img.png``, each 600×600, 8-bit
grey, published with the authors' code (MIT) at
https://github.com/FabianAltekrueger/Conditional_MMD_Flows/tree/main/material_data.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import torch

from cmmd._checks import check_positive_int
from cmmd.data._common import (
    DownloadError,
    ImageDataset,
    check_n,
    check_request,
    fetch,
    file_digest,
    local_dir,
    not_found,
    to_unit_float,
)

MATERIALS_CREDIT = (
    "SiC microstructure images (Hagemann et al., ICLR 2024; MIT licence): acquired in the frame of the "
    "EU Horizon 2020 Marie Sklodowska-Curie Actions Innovative Training Network MUMMERING "
    "(grant agreement 765604) at the TOMCAT beamline of the Swiss Light Source by A. Saadaldin, "
    "D. Bernard and F. Marone Welford."
)
MATERIALS_URL = "https://raw.githubusercontent.com/FabianAltekrueger/Conditional_MMD_Flows/main/material_data/"
MATERIALS_DIRNAME = "material_data"
SHARED_MATERIALS = Path("shared") / "data" / "sic" / MATERIALS_DIRNAME
_SLICES = (1, *range(20, 300, 20), *range(320, 601, 20))  # the authors' 30 slices (no slice300)
# sha256 of the authors' files, in numeric slice order; the test image first.
MATERIALS_SHA256 = {
    "test/hr_img.png": "ca577e17ea57217cb1bed59b7cc3be92a9eb8ba8098cee26ae9659f0ed1b1b10",
    **dict(zip((f"train/slice{k}.png" for k in _SLICES), (
        "4bf661ec8c9a8c2d77a7b626d1a009f1e3714a042c87fad9c7593010ec24ea8a",
        "d32902c8ca0feb716f39fb9c3effd5223e9167ed0ccbff6023c5092e9e8f3254",
        "da40a8739bfbf6f96927ce3b4c764a84278e7c5b3bb50eb69c00adc44cbef9ea",
        "9089b9c84bcd59045ecbd5bc93c63448088d98b99db156e75b3d8f35f9d0c47a",
        "98eace7aa526fff4d7747af37c70eb0a8a0c7a90d64a6f078360da84ef882daf",
        "9a63a6a60e0323326ed1b90a6ed83079ce033b807ea5ae05e0ce5ecf4859b4bb",
        "d69906d7556eb2d874e82384d8e5c319f450220ea167758b0929cfc6f74519e7",
        "596813b6573719479ad31f1fea64e0d84d56f19047f691bf3eac9f15345aa028",
        "be3b251c3b8bc5e6275ff9ab8cfaf6c1ca88b93a7aecd7e1b298c5b0b3719e96",
        "992c8218409c971c859f9623576db134345a1d63e3844cab13b15d55bd288c47",
        "6d89f65784e7c156bfe7d630d1362a5c064db8aa8b991b94bb9d68ab87c41461",
        "afa3eab42a7fe5296b8103c8acb649868a2ff91af783266ee3b9c3d279f8a024",
        "7b83ef6baad9ae4848e8ad0695ce576afcedc263e8478bbd7fa1083a13959cfe",
        "f10339c626334319f0caadbf4bd8cb900db8573df73286ad3d236df3f1da02e2",
        "30f1fd9ae09d8e156fc7b6c646ef130b225f4fc62d8419126c44b50e42742da8",
        "6b3b5b7c6f7780f670e534cb86bb90eb7ad38e9b3833a479f06643347fa9cdbf",
        "458ae89977a8d07ea30e845a0cb8c470ad2ea8784532a53c23be2796ffc9781c",
        "3b75b1e9cdad49fec40b9b4081270092d1f09d156406dbaaf65b337e65c404f8",
        "3e3a5f53caaa36092440cf71c45b1754ab4743f707074417eed7aab1ed84d52e",
        "a220e50b9d7ba6260108314316c17f1f38fa92567e1d1844477ae66b519d3e25",
        "82f2ab4116eccb6f9073bf67527edd0f1dab0e4a9e18c255656f90311f1b79be",
        "e38af85f70830d612d2d2dbaa7eb1af6f5a386e8f60971f4a564dc48bbc57427",
        "56662383eedecd7c751f39872fabf386363d34b28109735fafbb49fc03fa5c42",
        "05222635ebd8c75a8b7fc79e234e7bfc46fac6a8ac5ac3daf0bdd65a1074bcdd",
        "4a5ec90f3861eab0e5a86c64e79200c4a77d708c2e5d1e4db97215e4c4df3511",
        "4eb025bba81b56980bac02e92a270faec41bab52c2d164f6c0b59abd361a7187",
        "f9270815fa5d568603290aee888456a70a41405481950ed02c3c6bb144ce41b7",
        "4fc3d86e0f0a34bb37e68ce99153f43131e19941580a8705502c1c1880381ffe",
        "823de44f3482c361b5092e1124385de5cd53833dc55f6fd004ef24616314a0dc",
        "5bbc700af9f04b7abf130f7766cfa7c9443e8ed225d0e76716e418678d27388d",
    ))),
}


def read_grey_png(path: Path) -> torch.Tensor:
    """An 8- or 16-bit grey image file as a float32 tensor of shape (1, H, W) in [0, 1].

    Raises ``ValueError`` naming the file when it is not a readable image (corrupt or truncated).
    """
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - Pillow comes with matplotlib and scikit-image
        raise ImportError("reading PNG files needs Pillow: pip install pillow") from error
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I;16"):
                return to_unit_float(np.asarray(image, dtype=np.uint16).astype(np.int32), 65535.0)[None]
            return to_unit_float(np.asarray(image.convert("L")))[None]
    except (OSError, ValueError, SyntaxError) as error:  # PIL.UnidentifiedImageError, truncated data
        raise ValueError(f"{path} is not a readable image ({type(error).__name__}: {error}); it is corrupt or "
                         f"truncated: delete it (a download fetches it again) or replace it") from None


def _release_names(split: str) -> list[str]:
    """The files of ``split`` in the authors' release (keys of :data:`MATERIALS_SHA256`), in numeric order."""
    names = [name for name in MATERIALS_SHA256 if name.startswith(f"{split}/")]
    return sorted(names, key=lambda name: _slice_key(Path(name)))


def _check_release(directory: Path, files: list[Path], split: str) -> None:
    """Raise ``ValueError`` unless ``files`` are exactly the release's files of ``split``, each with its sha256.

    A partial set, a stray image and a changed or damaged file are refused, each naming the files and the
    fix (complete or repair the folder, or pass ``partial=True`` to take the images found as they are).
    """
    found = {f"{split}/{path.name}" for path in files}
    release = _release_names(split)
    opt_in = "or pass partial=True to use the images found as they are"
    strays = sorted(found - set(release))
    if strays:
        raise ValueError(f"{directory / split} holds files that are not in the release: {', '.join(strays)}; "
                         f"move them out of that folder, {opt_in}")
    missing = [name for name in release if name not in found]
    if missing:
        raise ValueError(
            f"{directory / split} holds {len(found)} of the {len(release)} {split} images of the release "
            f"(missing: {', '.join(Path(m).name for m in missing[:5])}{' ...' if len(missing) > 5 else ''}); "
            f"complete the folder (delete it and load with download=True to fetch all), {opt_in}")
    for path in files:
        name = f"{split}/{path.name}"
        if file_digest(path, "sha256") != MATERIALS_SHA256[name]:
            raise ValueError(f"{path} does not match the sha256 of the release's {name}: it is damaged or was "
                             f"changed; delete it and load with download=True to fetch it again, {opt_in}")


def _slice_key(path: Path) -> tuple[int, str]:
    """Sort key: the number in the file name (slice20 before slice100), then the name."""
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


def _split_files(directory: Path, split: str) -> list[Path]:
    """The image files of ``split`` in a ``material_data`` directory, train in numeric slice order."""
    if split == "test":
        test = directory / "test" / "hr_img.png"
        return [test] if test.is_file() else []
    return sorted((directory / "train").glob("*.png"), key=_slice_key)


def _find_shared() -> Path | None:
    """``shared/data/sic/material_data`` in the nearest ancestor of this package or of the cwd."""
    starts = (Path(__file__).resolve().parent, Path.cwd().resolve())
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / SHARED_MATERIALS
            if (candidate / "train").is_dir():
                return candidate
    return None


def _download_materials(directory: Path) -> None:
    """Fetch the 31 files of the authors' repository into ``directory`` (sha256-checked).

    Files go to ``directory.part`` first (a rerun resumes there); the folder is renamed only when all
    31 files are in, so an interrupted download never looks like a (smaller) data set.
    """
    part = directory.with_name(directory.name + ".part")
    for name, sha in MATERIALS_SHA256.items():
        if not (part / name).is_file():
            fetch([MATERIALS_URL + name], part / name, checksum=("sha256", sha))
    for name in MATERIALS_SHA256:  # all files are in: move them (keeping any the user put there)
        if not (directory / name).is_file():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (part / name).replace(directory / name)
    shutil.rmtree(part)


def _resolve(split: str, download: bool) -> tuple[list[Path], str]:
    """The files of ``split`` and their source string; raises the four-option FileNotFoundError."""
    root, kind = local_dir()
    files = _split_files(root / MATERIALS_DIRNAME, split)
    if files:
        return files, f"{kind}: {root / MATERIALS_DIRNAME}"
    shared = _find_shared()
    if shared is not None and _split_files(shared, split):
        return _split_files(shared, split), f"shared: {shared}"
    error = None
    if download:
        try:
            _download_materials(root / MATERIALS_DIRNAME)
            return _split_files(root / MATERIALS_DIRNAME, split), f"download: {root / MATERIALS_DIRNAME}"
        except DownloadError as failure:
            error = str(failure)
    raise not_found(
        f"SiC materials images ({split})",
        missing=f"{MATERIALS_DIRNAME}/train/slice*.png and {MATERIALS_DIRNAME}/test/hr_img.png",
        offline=f"no package ships them; no {SHARED_MATERIALS} in any parent folder of the package or cwd",
        urls=[MATERIALS_URL + "{train/slice*.png, test/hr_img.png}"], download_error=error)


def load_materials(
    split: str = "train", *, n: int | None = None, download: bool = True, partial: bool = False
) -> ImageDataset:
    """The SiC images: (30, 1, 600, 600) for ``"train"``, (1, 1, 600, 600) for ``"test"``, float32 in [0, 1].

    8-bit grey pixels are divided by 255. Train images come in numeric slice order
    (``slice1, slice20, ..., slice600``; the authors read them in ``os.listdir`` order, which is
    unspecified); ``result.names`` holds the file names, ``result.labels`` is ``None``.

    Sources, in order: ``$CMMD_DATA_DIR/material_data/`` (or ``~/.cache/cmmd/material_data/``) →
    ``shared/data/sic/material_data`` in a parent folder of the package or the working directory →
    download from :data:`MATERIALS_URL` (sha256-checked) → :class:`FileNotFoundError`.

    Credit (:data:`MATERIALS_CREDIT`): acquired in the frame of the EU Horizon 2020 MSCA ITN MUMMERING
    (grant 765604) at the TOMCAT beamline of the SLS by A. Saadaldin, D. Bernard and F. Marone Welford.

    The folder found must hold exactly the release's files of the split (30 training slices, or the test
    image), each matching its sha256 (:data:`MATERIALS_SHA256`): a partial set, a stray image or a damaged
    file raises ``ValueError`` naming them, unless ``partial=True``.

    Args:
        split: ``"train"`` or ``"test"``.
        n: take the first ``n`` images (``None``: all).
        download: allow the download step.
        partial: take every PNG found in the folder as it is, unchecked against the release (a subset or
            images of your own).
    """
    check_request(split, n)
    if not isinstance(partial, bool):
        raise ValueError(f"partial must be True or False, got {partial!r}")
    files, source = _resolve(split, download)
    if not partial:
        _check_release(files[0].parent.parent, files, split)
    files = files[: check_n(n, len(files), f"the materials {split} split ({source})")]
    images = torch.stack([read_grey_png(path) for path in files])
    height, width = images.shape[-2:]
    note = (f"SiC microstructure, {split} split of the authors' repository: {len(files)} images of "
            f"{height}x{width} pixels. {MATERIALS_CREDIT}")
    return ImageDataset(images, None, source, note, tuple(path.name for path in files))


def materials_tiles(images: torch.Tensor, *, tile: int = 100, n_tiles: int | None = 1000) -> torch.Tensor:
    """Cut images into the paper's training tiles: a non-overlapping grid, first ``n_tiles`` tiles.

    Tile ``k`` comes from image ``k // (gh·gw)``, grid row ``(k // gw) % gh`` and column ``k % gw``, where
    ``gh = H // tile`` and ``gw = W // tile`` (36 tiles per 600×600 image for ``tile=100``): the order of
    the authors' ``createTrainset`` (image, then row, then column). The paper's 1,000 tiles are the
    first 1,000 of the 1,080 from the 30 training images [method §5].

    Args:
        images: (N, C, H, W) with H, W >= ``tile``.
        tile: side of the square tiles in pixels.
        n_tiles: how many tiles to return; ``None``: all ``N·gh·gw``.

    Returns:
        Tiles of shape (n_tiles, C, tile, tile), a new tensor.
    """
    check_positive_int("tile", tile)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    count, channels, height, width = images.shape
    gh, gw = height // tile, width // tile
    if gh == 0 or gw == 0:
        raise ValueError(f"tile={tile} is larger than the images ({height}x{width})")
    grid = images[:, :, : gh * tile, : gw * tile].reshape(count, channels, gh, tile, gw, tile)
    tiles = grid.permute(0, 2, 4, 1, 3, 5).reshape(count * gh * gw, channels, tile, tile)
    take = check_n(n_tiles, len(tiles), f"the {count} images cut into {gh}x{gw} tiles each", name="n_tiles")
    return tiles[:take].clone()
