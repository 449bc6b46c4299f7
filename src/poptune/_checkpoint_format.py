"""The checkpoint file format: plain state without pickle.

A checkpoint is *data*, and a checkpoint directory is shared by every worker of a study (and
named by rows of its database): a format that runs code when it is read (``pickle``, a full
``torch.load``) would let whoever can write one file, or one row, run code on every worker.
So :func:`write` stores the common kinds of training state in a format whose reader cannot
execute anything, and :func:`read` reads it, plus PyTorch files through
``torch.load(weights_only=True)``. Pickle is used only when the caller allows it.

The format is a zip archive (stored, not compressed) holding:

* ``poptune-checkpoint.json``: ``{"format": "poptune.checkpoint", "version": 1, "tree": T}``
  where ``T`` is the object as JSON: ``None``, bools, ints, finite floats, strs and lists
  as themselves; anything else as an object with a ``"$"`` key: ``dict`` (keys and values as
  lists of nodes, so int keys such as an optimizer's survive), ``odict`` (an
  ``OrderedDict``, with the ``_metadata`` a PyTorch ``state_dict`` carries), ``tuple``,
  ``float`` (``nan``, ``inf``, ``-inf``), ``bytes`` (base64), ``nd`` (a numpy array, in
  ``arrays/<i>.npy``), ``np`` (a numpy scalar, a 0-d array there) and ``pt`` (a PyTorch
  tensor, the ``i``-th of ``tensors.pt``);
* ``arrays/<i>.npy``: numpy's own ``.npy`` files, written and read with
  ``allow_pickle=False`` (object arrays are refused);
* ``tensors.pt``: a list of tensors written by ``torch.save``, read with
  ``torch.load(weights_only=True)``.

What it holds: PyTorch ``state_dict`` s (model and optimizer), dicts and lists of numpy arrays
and numbers (Keras' ``model.get_weights()``), plain Python values. Anything else raises
:class:`UnsupportedValue` naming where it is in the object.
"""

from __future__ import annotations

import base64
import io
import json
import math
import pickle
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import zipfile

from poptune.exceptions import CheckpointError

__all__ = ["UnsupportedValue", "encode", "read", "write"]

FORMAT = "poptune.checkpoint"
VERSION = 1
_INDEX = "poptune-checkpoint.json"
_TENSORS = "tensors.pt"
PICKLE_HINT = (
    "pass allow_pickle=True to the Study (or to Study.load or join_study, or to the "
    "CheckpointStore) to allow pickle, and only for checkpoints you trust: reading a pickle "
    "runs whatever code its writer put in it"
)


class UnsupportedValue(CheckpointError, TypeError):
    """An object that the pickle-free format cannot hold (its message says where it is)."""


def loaded_torch() -> Any:
    """PyTorch when it is already imported (no tensor exists otherwise), else None."""
    return sys.modules.get("torch")


class _Encoder:
    """Turns an object into the JSON tree, collecting arrays and tensors on the side."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []
        self.tensors: list[Any] = []
        self._seen: set[int] = set()  # containers on the current path (a cycle is refused)
        self.tree: Any = None

    def node(self, value: Any, where: str) -> Any:
        kind = type(value)
        if value is None or kind in (bool, int, str):
            return value
        if kind is float:
            return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
        if isinstance(value, np.ndarray):
            return {"$": "nd", "i": self._array(value, where)}
        if isinstance(value, np.generic):
            return {"$": "np", "i": self._array(np.asarray(value), where)}
        torch = loaded_torch()
        if torch is not None and isinstance(value, torch.Tensor):
            self.tensors.append(value.detach())
            return {"$": "pt", "i": len(self.tensors) - 1}
        if kind in (bytes, bytearray):
            return {"$": "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
        if kind in (list, tuple, dict, OrderedDict):
            if id(value) in self._seen:
                raise UnsupportedValue(f"{where} contains itself")
            self._seen.add(id(value))
            try:
                return self._container(value, where)
            finally:
                self._seen.discard(id(value))
        raise UnsupportedValue(
            f"{where} is a {kind.__module__}.{kind.__qualname__}, which a checkpoint stores "
            "only with pickle (without it: tensors, numpy arrays, numbers, str, bytes, and "
            "dicts, lists and tuples of them)"
        )

    def _container(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [self.node(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {"$": "tuple", "v": [self.node(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        keys = [self.node(k, f"{where} key {k!r}") for k in value]
        values = [self.node(v, f"{where}[{k!r}]") for k, v in value.items()]
        if type(value) is dict:
            return {"$": "dict", "k": keys, "v": values}
        meta = getattr(value, "_metadata", None)
        out = {"$": "odict", "k": keys, "v": values}
        if meta is not None:
            out["meta"] = self.node(meta, f"{where}._metadata")
        return out

    def _array(self, array: np.ndarray, where: str) -> int:
        if array.dtype.hasobject:
            raise UnsupportedValue(
                f"{where} is a numpy array of dtype {array.dtype}, which only pickle stores"
            )
        self.arrays.append(array)
        return len(self.arrays) - 1


def encode(obj: Any) -> _Encoder:
    """Check and encode ``obj`` (raises :class:`UnsupportedValue`); nothing is written."""
    encoder = _Encoder()
    encoder.tree = encoder.node(obj, "the checkpoint")
    return encoder


def write(fh: IO[bytes], encoded: _Encoder) -> None:
    """Write an :func:`encode` d object to the binary file ``fh``."""
    import zipfile  # here: a study that writes no checkpoint never imports it (bz2, lzma)

    index = {"format": FORMAT, "version": VERSION, "tree": encoded.tree}
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(_INDEX, json.dumps(index, allow_nan=False))
        for i, array in enumerate(encoded.arrays):
            with zf.open(f"arrays/{i}.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)
        if encoded.tensors:
            buffer = io.BytesIO()
            loaded_torch().save(encoded.tensors, buffer)
            zf.writestr(_TENSORS, buffer.getvalue())


def read(source: Path | IO[bytes], allow_pickle: bool, where: str | None = None) -> Any:
    """Read a checkpoint (a file ``source``, or a seekable binary file object): poptune's
    format, a PyTorch file (``weights_only=True`` unless ``allow_pickle``) or, with
    ``allow_pickle`` only, a pickle. ``where`` names it in messages (default: the path).

    Raises:
        CheckpointError: it cannot be read, or needs pickle and ``allow_pickle`` is False (it
            is never unpickled then).
    """
    if isinstance(source, Path):
        with open(source, "rb") as fh:
            return read(fh, allow_pickle, where or str(source))
    path = where or "the checkpoint"
    fh = source
    head = fh.read(4)
    fh.seek(0)
    if head[:2] == b"PK":
        import zipfile

        with zipfile.ZipFile(fh) as zf:
            if _INDEX in zf.namelist():
                return _read_own(zf, path)
        fh.seek(0)
        return _read_torch(fh, path, allow_pickle)
    if not allow_pickle:
        raise CheckpointError(
            f"checkpoint {path} is not in poptune's pickle-free format nor a PyTorch file "
            f"(a pickle, or written elsewhere); it was not read: {PICKLE_HINT}"
        )
    return pickle.load(fh)


def _read_torch(fh: IO[bytes], path: str, allow_pickle: bool) -> Any:
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"checkpoint {path} was written by torch.save: install torch to read it"
        ) from None
    if allow_pickle:
        return torch.load(fh, weights_only=False)
    try:
        return torch.load(fh, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = [line.strip() for line in str(exc).splitlines() if "Unsupported" in line]
        what = f" ({found[0].split(' was not')[0]})" if found else ""
        raise CheckpointError(
            f"checkpoint {path} is a PyTorch file holding more than tensors and plain "
            f"containers{what}; it was not unpickled: {PICKLE_HINT}"
        ) from None


def _read_own(zf: zipfile.ZipFile, path: str) -> Any:
    index = json.loads(zf.read(_INDEX))
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has an unknown index")
    if not isinstance(index.get("version"), int) or index["version"] > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {index.get('version')!r}; this poptune "
            f"reads up to {VERSION}: upgrade poptune"
        )
    tensors: list[Any] = []
    if _TENSORS in zf.namelist():
        try:
            import torch
        except ImportError:
            raise CheckpointError(f"checkpoint {path} holds tensors: install torch") from None
        tensors = torch.load(io.BytesIO(zf.read(_TENSORS)), weights_only=True)

    def array(i: int) -> np.ndarray:
        with zf.open(f"arrays/{int(i)}.npy") as src:
            return np.lib.format.read_array(src, allow_pickle=False)

    return _decode(index["tree"], array, tensors)


def _decode(node: Any, array: Callable[[int], np.ndarray], tensors: list[Any]) -> Any:
    if isinstance(node, list):
        return [_decode(v, array, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("$")
    if kind == "float":
        return float(node["v"])
    if kind == "nd":
        return array(node["i"])
    if kind == "np":
        return array(node["i"])[()]
    if kind == "pt":
        return tensors[int(node["i"])]
    if kind == "bytes":
        return base64.b64decode(node["v"])
    if kind == "tuple":
        return tuple(_decode(v, array, tensors) for v in node["v"])
    if kind in ("dict", "odict"):
        keys = [_decode(k, array, tensors) for k in node["k"]]
        values = [_decode(v, array, tensors) for v in node["v"]]
        pairs = zip(keys, values, strict=True)
        out: Any = dict(pairs) if kind == "dict" else OrderedDict(pairs)
        if "meta" in node:
            out._metadata = _decode(node["meta"], array, tensors)
        return out
    raise ValueError(f"unknown node {kind!r}")
