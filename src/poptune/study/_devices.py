"""One device per worker: ``study.optimize(..., n_workers=4, devices=["cuda:0", "cuda:1"])``.

Each worker process is given one device, round-robin when there are more workers than devices
(worker ``i`` gets ``devices[i % len(devices)]``: 4 workers on 2 GPUs, two per GPU). The
device reaches the worker through its environment, set before the process starts (so before
anything in it can initialize CUDA):

================================ ======================================================
device                           the worker's environment
================================ ======================================================
``"cuda:N"`` (or ``N``)          ``CUDA_VISIBLE_DEVICES=N``, ``POPTUNE_DEVICE=cuda:0``
                                 (the one GPU the process sees is its ``cuda:0``)
``"cuda:GPU-…"``, ``"cuda:MIG-…"`` the same, with that UUID
``"cpu"``                        ``CUDA_VISIBLE_DEVICES=`` (no GPU), ``POPTUNE_DEVICE=cpu``
anything else (``"mps"``, …)     ``POPTUNE_DEVICE`` only
================================ ======================================================

The objective reads ``trial.device`` (``POPTUNE_DEVICE``: what to pass to ``.to(...)``).
``POPTUNE_DEVICE_ASSIGNED`` holds the device as given (``cuda:1``), for logs. With one worker
in the calling process (``n_workers=1``, no executor) the process is already running: only
``POPTUNE_DEVICE`` is set, to the device as given, for the call. ``poptune worker --device``
does the same for one worker started by hand.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from poptune._validation import reject
from poptune.exceptions import ConfigurationError

__all__ = [
    "ENV_ASSIGNED",
    "ENV_DEVICE",
    "assign",
    "check_device",
    "check_devices",
    "environment",
    "environ",
    "worker_environment",
]

#: The device the objective should use, as that process names it.
ENV_DEVICE = "POPTUNE_DEVICE"
#: The device as the caller gave it (``cuda:1``).
ENV_ASSIGNED = "POPTUNE_DEVICE_ASSIGNED"

_CUDA = re.compile(r"cuda:(\d+|(?:GPU|MIG)-[0-9A-Za-z/-]+)")
_OTHER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(:\d+)?")


def check_device(owner: str, device: Any) -> str:
    """One device checked: ``"cuda:N"``, an int ``N`` (``"cuda:N"``), a CUDA UUID
    (``"cuda:GPU-…"``), ``"cpu"`` or another name (``"mps"``, ``"xpu:0"``); returned as text.

    Raises:
        ConfigurationError: anything else (``"cuda"`` alone: which one?, ``"cuda:0,1"``).
    """
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return f"cuda:{device}"
    if isinstance(device, str) and (_CUDA.fullmatch(device) or (
            _OTHER.fullmatch(device) and not device.startswith("cuda"))):  # fmt: skip
        return device
    what = "'cuda:N', an int N, 'cuda:GPU-<uuid>', 'cpu' or a device name such as 'mps'"
    reject(owner, "device", what, device, wrong_type=not isinstance(device, (str, int)))


def check_devices(devices: Any, executor: Any) -> list[str] | None:
    """``optimize``'s ``devices``: None, a count ``k`` (``cuda:0`` … ``cuda:k-1``) or a
    non-empty list of devices (:func:`check_device`); returned as a list (or None).

    Raises:
        ConfigurationError: a bad value, or devices with an executor (on Dask, ask for
            ``resources={"GPU": 1}`` and let each Dask worker own its GPU).
    """
    if devices is None:
        return None
    if executor is not None:
        raise ConfigurationError(
            "optimize: devices= gives local worker processes their device; with an executor, "
            "pass resources={'GPU': 1} and let each Dask worker own its GPU (dask-cuda's "
            "LocalCUDACluster sets CUDA_VISIBLE_DEVICES per worker)"
        )
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices < 1:
            reject("optimize", "devices", "a count >= 1 or a list", devices, wrong_type=False)
        return [f"cuda:{i}" for i in range(devices)]
    if isinstance(devices, str) or not isinstance(devices, Sequence) or not devices:
        what = "a count of GPUs or a non-empty list such as ['cuda:0', 'cuda:1']"
        wrong = isinstance(devices, str) or not isinstance(devices, Sequence)
        reject("optimize", "devices", what, devices, wrong_type=wrong)
    return [check_device("optimize", d) for d in devices]


def assign(devices: Sequence[str] | None, n_workers: int) -> list[str | None]:
    """Worker ``i``'s device: ``devices[i % len(devices)]`` (None without devices)."""
    if not devices:
        return [None] * n_workers
    return [devices[i % len(devices)] for i in range(n_workers)]


def environment(device: str | None) -> dict[str, str]:
    """The environment variables a worker process given ``device`` starts with."""
    if device is None:
        return {}
    env = {ENV_ASSIGNED: device}
    match = _CUDA.fullmatch(device)
    if match is not None:
        env.update({"CUDA_VISIBLE_DEVICES": match.group(1), ENV_DEVICE: "cuda:0"})
    elif device == "cpu":
        env.update({"CUDA_VISIBLE_DEVICES": "", ENV_DEVICE: "cpu"})
    else:
        env[ENV_DEVICE] = device
    return env


def worker_environment(device: Any, owner: str = "poptune worker") -> dict[str, str]:
    """The environment variables a worker process given ``device`` sets before its objective
    can initialize CUDA (``poptune worker --device``): :func:`environment` of the device
    :func:`check_device` accepts.

    Raises:
        ConfigurationError: ``device`` is not a device (see :func:`check_device`).
    """
    return environment(check_device(owner, device))


@contextmanager
def environ(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``env`` set inside the block, as it was after it (a process
    started inside inherits it)."""
    old = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
