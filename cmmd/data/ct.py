"""Images for the CT experiments: procedural ellipse phantoms (training), the Shepp–Logan phantom and
a few real CT slices (evaluation). LoDoPaB, the paper's data set, is not available offline.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cmmd._checks import check_positive_int
from cmmd.data._common import ImageDataset

# Real CT slices in pydicom / pydicom-data (checked offline). eCT_Supplemental.dcm is left out on
# purpose: it is a derived perfusion map (ImageType DERIVED/PERFUSION/RCBF), not attenuation values.
CT_SLICES = {
    "CT_small.dcm": "128x128 thoracic spine (ships with pydicom)",
    "693_UNCI.dcm": "512x512 head (pydicom-data)",
    "explicit_VR-UN.dcm": "512x512 abdomen (pydicom-data)",
}
CT_WINDOW_HU = (-1000.0, 1000.0)
PYDICOM_INSTALL = "pip install pydicom==3.0.2 pydicom-data==1.0.0"
_CHUNK = 64  # phantoms rasterised at once: bounds memory to about 3·_CHUNK·size² floats


# ----------------------------------------------------------------------------- ellipse phantoms

def _ellipse_parameters(n: int, max_ellipses: int, n_ellipses: tuple[int, int],
                        generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Parameters (n, max_ellipses, 7): cx, cy, a, b, theta, value, active; slots sorted by area, largest first.

    Each phantom draws its own numbers in turn, so phantom i does not depend on n.
    """
    low, high = n_ellipses
    rows = []
    for _ in range(n):
        u = torch.rand(1 + 7 * max_ellipses, generator=generator, device=device)
        count = low + min(int(u[0] * (high - low + 1)), high - low)
        u = u[1:].reshape(max_ellipses, 7)
        radius, angle = 0.8 * u[:, 0].sqrt(), 2 * math.pi * u[:, 1]
        axes = 0.05 + 0.5 * u[:, 2:4]
        active = (torch.arange(max_ellipses, device=device) < count).to(u.dtype)
        rows.append(torch.stack([radius * angle.cos(), radius * angle.sin(), axes[:, 0], axes[:, 1],
                                 math.pi * u[:, 4], 0.1 + 0.9 * u[:, 5], active], dim=1))
    params = torch.stack(rows)
    area = params[..., 2] * params[..., 3] * params[..., 6]  # inactive slots sort last
    order = area.argsort(dim=1, descending=True)
    return params.gather(1, order[..., None].expand_as(params))


def _pixel_grid(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [-1, 1]: x along columns, y along rows, each (size, size)."""
    t = (2 * torch.arange(size, device=device, dtype=torch.float32) + 1) / size - 1
    return t[None, :].expand(size, size), t[:, None].expand(size, size)


def _paint(params: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Paint the ellipses of params (B, K, 7) in slot order onto zero images (B, size, size)."""
    image = torch.zeros(params.shape[0], *x.shape, device=x.device)
    for k in range(params.shape[1]):
        cx, cy, a, b, theta, value, active = (params[:, k, j, None, None] for j in range(7))
        dx, dy = x - cx, y - cy
        u = (dx * theta.cos() + dy * theta.sin()) / a
        w = (dy * theta.cos() - dx * theta.sin()) / b
        image = torch.where((u * u + w * w <= 1) & (active > 0), value, image)
    return image


def random_ellipse_phantoms(n: int, size: int, *, generator: torch.Generator | None = None,
                            n_ellipses: tuple[int, int] = (3, 10)) -> torch.Tensor:
    """Random piecewise-constant phantoms made of ellipses, zero outside the inscribed circle.

    Each phantom holds a uniform random number of ellipses in ``n_ellipses`` (inclusive). On the
    square [-1, 1]², each ellipse has its centre uniform in the disc of radius 0.8, semi-axes uniform in
    [0.05, 0.55], rotation uniform in [0, π) and intensity uniform in [0.1, 1]. Ellipses are painted
    largest first, each overwriting what lies below, so values stay in [0, 1] without clipping and
    small ellipses stay visible. Pixels whose centre lies outside the unit circle are 0.

    Deterministic: the same generator state gives the same phantoms, and the first ``k`` of ``n``
    phantoms equal ``random_ellipse_phantoms(k, ...)`` from the same state. The global RNG is not used.

    Args:
        n: number of phantoms.
        size: side length in pixels.
        generator: source of randomness; the output lives on its device. ``None``: a fresh CPU generator
            seeded from the operating system (not reproducible; the global RNG is left untouched).
        n_ellipses: (min, max) ellipses per phantom.

    Returns:
        float32 tensor of shape (n, 1, size, size) with values in [0, 1].
    """
    check_positive_int("n", n)
    check_positive_int("size", size)
    low, high = n_ellipses
    if isinstance(low, bool) or not isinstance(low, int) or not isinstance(high, int) or not 1 <= low <= high:
        raise ValueError(f"n_ellipses must be integers (min, max) with 1 <= min <= max, got {n_ellipses!r}")
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    device = generator.device
    params = _ellipse_parameters(n, high, n_ellipses, generator, device)
    x, y = _pixel_grid(size, device)
    inside = (x * x + y * y <= 1).to(torch.float32)
    chunks = [_paint(params[i:i + _CHUNK], x, y) * inside for i in range(0, n, _CHUNK)]
    return torch.cat(chunks)[:, None]


# ----------------------------------------------------------------------------- Shepp-Logan, real slices

def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop (N, C, H, W) to a square, resize to size×size (antialiased bilinear), clamp to [0, 1]."""
    height, width = images.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    images = images[..., top:top + side, left:left + side]
    if side != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return images.clamp(0, 1)


def shepp_logan(size: int) -> torch.Tensor:
    """The modified Shepp–Logan phantom of scikit-image (400×400, values in [0, 1]) resized to size×size.

    Returns:
        float32 tensor of shape (1, 1, size, size) in [0, 1] (antialiased bilinear resizing).
    """
    check_positive_int("size", size)
    try:
        from skimage.data import shepp_logan_phantom
    except ImportError as error:
        raise ImportError("shepp_logan needs scikit-image: pip install scikit-image") from error
    phantom = torch.from_numpy(np.asarray(shepp_logan_phantom(), dtype=np.float32))
    return _resize(phantom[None, None], size)


def _import_pydicom():
    try:
        import pydicom
        from pydicom.data import get_testdata_file
    except ImportError as error:
        raise ImportError(f"ct_slices needs pydicom and pydicom-data (optional): {PYDICOM_INSTALL}") from error
    return pydicom, get_testdata_file


def _read_hu(name: str) -> torch.Tensor:
    """One DICOM slice from pydicom's test data in Hounsfield units, (H, W) float32 (no download)."""
    pydicom, get_testdata_file = _import_pydicom()
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"DICOM file {name!r} not found locally; install the test data: {PYDICOM_INSTALL}")
    dataset = pydicom.dcmread(path)
    slope, intercept = float(dataset.get("RescaleSlope", 1)), float(dataset.get("RescaleIntercept", 0))
    return torch.from_numpy(dataset.pixel_array.astype(np.float32) * slope + intercept)


def ct_slices(size: int, *, names: tuple[str, ...] = tuple(CT_SLICES),
              window: tuple[float, float] = CT_WINDOW_HU) -> ImageDataset:
    """Real CT slices from pydicom's test data, windowed to [0, 1] and resized to size×size.

    Pixels are converted to Hounsfield units (``RescaleSlope``, ``RescaleIntercept``) and mapped by the
    window ``(low, high)``: ``clamp((HU - low) / (high - low), 0, 1)``. The default (-1000, 1000) HU sends
    air to 0, water to 0.5 and dense bone to 1. Non-square slices are centre-cropped; resizing is
    antialiased bilinear. Slices: :data:`CT_SLICES` (a spine, a head and an abdomen slice).

    Needs the optional packages ``pydicom`` and ``pydicom-data`` (``pip install pydicom==3.0.2
    pydicom-data==1.0.0``); files are found offline, never downloaded.

    Returns:
        ``ImageDataset`` with images (len(names), 1, size, size) float32 in [0, 1], ``labels=None`` and
        ``names`` the DICOM file names.
    """
    check_positive_int("size", size)
    low, high = window
    if not high > low:
        raise ValueError(f"window must be (low, high) in HU with high > low, got {window!r}")
    if not names:
        raise ValueError("names is empty; pass at least one DICOM file name, e.g. 'CT_small.dcm'")
    images = [_resize(((_read_hu(name) - low) / (high - low)).clamp(0, 1)[None, None], size) for name in names]
    note = (f"{len(names)} real CT slices from pydicom-data ({', '.join(names)}), window [{low:g}, {high:g}] HU "
            f"mapped to [0, 1], resized to {size}x{size}")
    return ImageDataset(torch.cat(images), None, "pydicom-data", note, tuple(names))
