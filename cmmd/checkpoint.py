"""Files of trained flows and training checkpoints: safe to read, checked for corruption, written atomically.

Reading never unpickles arbitrary objects: every file is read with ``torch.load(..., weights_only=True)``,
which accepts only tensors, dicts, lists and plain Python scalars and strings (everything a cmmd file
holds), so a crafted file cannot run code; it is refused as unreadable instead.

Every file carries a SHA-256 of its content (:func:`state_digest`: the bytes, dtype and shape of each
tensor and the value of each other entry, with their place in the state), written with it and checked on
load, so that a bit flipped on disk is reported as a corrupt file instead of loading silently.

Writing (:func:`atomic_save`) goes to a hidden temporary file in the same folder, flushed to disk and then
renamed over the target, so that a kill at any moment leaves the old file or the new one, never a mix.
The file gets the mode a plain ``open`` would give it (0666 less the umask); temporary files of earlier
saves that were killed are removed.

Resuming checks the training data by :func:`data_fingerprint`, a SHA-256 of the bytes of x and y in row
order (with their shapes and dtypes): exact about which x goes with which y, and the same for any thread
count or device, since no floating-point arithmetic is involved.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 3
CHECKSUM_KEY = "sha256"
_TMP_SUFFIX = ".tmp"
_HASH_ROWS = 1 << 16  # rows of x or y copied to the CPU and hashed at a time


class CheckpointError(ValueError):
    """A file that is not a readable cmmd file: corrupt, truncated, of another kind or format."""


# ---------------------------------------------------------------------- digests
def _update_tensor(digest: "hashlib._Hash", tensor: torch.Tensor) -> None:
    data = tensor.detach().to("cpu").contiguous().reshape(-1)
    digest.update(f"{data.dtype}{tuple(tensor.shape)}".encode())
    if data.numel():
        digest.update(data.view(torch.uint8).numpy().tobytes())


def _update(digest: "hashlib._Hash", value: Any, where: str) -> None:
    """Feed ``value`` (nested dicts/lists of tensors and plain values) to ``digest`` in a fixed order."""
    if isinstance(value, torch.Tensor):
        digest.update(f"|{where}:tensor".encode())
        _update_tensor(digest, value)
    elif isinstance(value, dict):
        digest.update(f"|{where}:dict{len(value)}".encode())
        for key, item in value.items():
            _update(digest, item, f"{where}/{key!r}")
    elif isinstance(value, (list, tuple)):
        digest.update(f"|{where}:{type(value).__name__}{len(value)}".encode())
        for index, item in enumerate(value):
            _update(digest, item, f"{where}/{index}")
    else:
        digest.update(f"|{where}:{type(value).__name__}={value!r}".encode())


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 (hex) of a state dict, leaving out its own :data:`CHECKSUM_KEY` entry.

    Covers every tensor's bytes, dtype and shape and every other entry's type and value, each with its
    key path, so that a changed, moved or missing entry changes the digest. Tensors on a GPU are copied to
    the CPU one at a time.
    """
    digest = hashlib.sha256()
    _update(digest, {k: v for k, v in state.items() if k != CHECKSUM_KEY}, "")
    return digest.hexdigest()


def data_fingerprint(x_flat: torch.Tensor, y_flat: torch.Tensor) -> str:
    """SHA-256 (hex) of training pairs x (N, d) and y (N, n): shapes, dtypes and bytes, row by row.

    Equal exactly when the same pairs come in the same order with the same dtypes, on any device and for
    any thread count; shuffling y against x, or changing one value, changes it. The rows are copied to
    the CPU in blocks of :data:`_HASH_ROWS`, so the memory needed stays small.
    """
    digest = hashlib.sha256()
    for name, tensor in (("x", x_flat), ("y", y_flat)):
        digest.update(f"|{name}:{tensor.dtype}{tuple(tensor.shape)}".encode())
        for start in range(0, tensor.shape[0], _HASH_ROWS):
            _update_tensor(digest, tensor[start : start + _HASH_ROWS])
    return digest.hexdigest()


# ---------------------------------------------------------------------- writing
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable_dir(name: str, directory: str | os.PathLike) -> Path:
    """Check that files can be written in ``directory`` (created later if missing); return it as a Path.

    Called before any work is done, so that a bad ``checkpoint_dir`` fails at once instead of after the
    first network trained: the path, or its nearest existing parent, must be a folder in which a file can
    be created (tried with a temporary file, removed at once). Nothing is created. The error names the
    argument, the folder and the reason.
    """
    path = Path(directory)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{name} = {path}: {existing} is a file, not a folder; pass a folder for the checkpoints")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".cmmd-write-test.", suffix=_TMP_SUFFIX)
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise ValueError(
            f"{name} = {path}: no file can be written in {existing} ({error.strerror or error}); "
            f"pass a writable folder"
        ) from error
    return path


def _stale_temporaries(path: Path) -> list[Path]:
    """Temporary files that earlier saves of ``path`` left behind (killed before their rename)."""
    return sorted(path.parent.glob(f".{path.name}.*{_TMP_SUFFIX}"))


def atomic_save(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` with its :func:`state_digest` under :data:`CHECKSUM_KEY`, atomically.

    The data go to ``.<name>.<random>.tmp`` in the same folder, are flushed to disk and renamed over
    ``path``; the file mode is 0666 less the umask. On any error (or Ctrl-C) the temporary file is removed
    and ``path`` is unchanged. Temporaries of killed earlier saves of ``path`` are removed after success.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = {**state, CHECKSUM_KEY: state_digest(state)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as stream:
            torch.save(stored, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    for stale in _stale_temporaries(path):
        stale.unlink(missing_ok=True)


# ---------------------------------------------------------------------- reading
_UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
               KeyError, IndexError, TypeError, AttributeError, ImportError, UnicodeDecodeError, MemoryError)


def read_state(path: str | os.PathLike, map_location: str | torch.device | None, *, what: str) -> dict[str, Any]:
    """Read a cmmd file written by :func:`atomic_save`, safely, and check its format and checksum.

    Args:
        path: the file.
        map_location: where tensors go, as for ``torch.load``.
        what: what the caller expected, for the messages (e.g. ``"a saved flow"``).

    Returns:
        The state dict, without its checksum entry.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is not a cmmd file of this format, is truncated, corrupt (its content
            does not match its checksum), or holds objects other than tensors and plain values (a pickle
            that would run code is refused here without running it). The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except _UNREADABLE as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable cmmd file: it is truncated, corrupt, or was not written by cmmd "
            f"({type(error).__name__}: {reason[:300]}); nothing in it was run. Delete it, or pass the "
            f"file that holds {what}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path} is not a cmmd file of format {FORMAT_VERSION} (found {found!r}); it was written by another "
            f"program or an older cmmd: train again (or load it with the cmmd version that wrote it)"
        )
    stored = state.pop(CHECKSUM_KEY, None)
    if stored != state_digest(state):
        raise CheckpointError(
            f"{path} is corrupt: its content does not match the checksum written with it (a changed or "
            f"damaged file); delete it, then train again or restore a good copy"
        )
    return state


# ---------------------------------------------------------------------- what a file holds
#: The kinds of cmmd files and the reader of each.
KINDS = {
    "flow": "a saved single-level flow (ConditionalMMDFlow.save; read it with ConditionalMMDFlow.load)",
    "checkpoint": "a training checkpoint (fit(checkpoint_dir=...); resume it with fit(..., resume=True))",
    "pyramid": "a saved PyramidFlow (PyramidFlow.save; read it with PyramidFlow.load)",
}
_STATE_TYPES = {"x_shape": list, "y_shape": list, "config": dict, "networks": list, "history": dict,
                "network_class": (str, type(None))}


def require_kind(state: dict[str, Any], path: str | os.PathLike, wanted: tuple[str, ...]) -> None:
    """Raise :class:`CheckpointError` naming ``path`` unless ``state["kind"]`` is one of ``wanted``;
    the message says what the file holds and how to read it."""
    kind = state.get("kind")
    if kind not in wanted:
        holds = KINDS.get(kind, f"an unknown kind of state ({kind!r})")
        expected = " or ".join(KINDS[k].split(" (")[0] for k in wanted)
        raise CheckpointError(f"{path} holds {holds}, not {expected}")
    if kind == "checkpoint" and not isinstance(state.get("training"), dict):
        raise CheckpointError(f"{path} is a training checkpoint without its 'training' entry; it is damaged: "
                              f"delete it and train again")


def check_flow_state(state: Any, config_fields: set[str], where: str = "state") -> None:
    """Raise ``ValueError`` naming ``where`` unless ``state`` has the entries of
    :meth:`cmmd.model.ConditionalMMDFlow.state_dict` with their types, and a config of known fields."""
    if not isinstance(state, dict):
        raise ValueError(f"{where} must be a dict as ConditionalMMDFlow.state_dict() returns, "
                         f"got {type(state).__name__}")
    wrong = [key for key, kind in _STATE_TYPES.items() if not isinstance(state.get(key), kind)]
    if wrong:
        hint = f" ({KINDS['pyramid']})" if state.get("kind") == "pyramid" else ""
        raise ValueError(f"{where} is not a ConditionalMMDFlow state: {', '.join(wrong)} missing or of the "
                         f"wrong type{hint}")
    unknown = set(state["config"]) - config_fields
    if unknown:
        raise ValueError(f"{where}: its config has fields {sorted(unknown)} that FlowConfig does not know; "
                         f"it was written by another cmmd version")


def differences(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """The entries (format, shapes, config, network class) in which a checkpoint differs from a flow."""
    out = []
    for key in ("format", "x_shape", "y_shape", "config", "network_class"):
        if expected.get(key) != found.get(key):
            out.append(f"{key}: checkpoint has {found.get(key)!r}, this flow has {expected.get(key)!r}")
    return out


def state_dtype(state: dict[str, Any]) -> torch.dtype:
    """The dtype of the first floating tensor of the networks in ``state`` (float32 when there is none)."""
    for weights in state["networks"]:
        for tensor in weights.values() if isinstance(weights, dict) else ():
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                return tensor.dtype
    return torch.float32
