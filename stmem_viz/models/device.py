"""Device and dtype selection: CUDA, then MPS, then CPU."""

from __future__ import annotations

import torch

from stmem_viz import StmemError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def available_devices() -> list[str]:
    """Names of the devices this machine can run on, best first (always ends with "cpu")."""
    found = []
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(name: str = "auto") -> torch.device:
    """Turn "auto", "cuda", "cuda:1", "mps" or "cpu" into a device that exists here.

    Raises:
        StmemError: the named device is not available on this machine.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device(available_devices()[0])
    devices = available_devices()
    if name == "cuda" and any(d.startswith("cuda") for d in devices):
        return torch.device("cuda:0")
    if name not in devices:
        raise StmemError(f"Device '{name}' is not available here; choose one of {devices}.")
    return torch.device(name)


def supported_dtypes(device: torch.device) -> list[str]:
    """The dtype names that run on ``device``: float16 only on accelerators."""
    if device.type == "cpu":
        return ["float32", "bfloat16"]
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return ["float32", "float16"]
    return ["float32", "bfloat16", "float16"]


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Map a dtype name to a torch dtype, checking the device supports it.

    Raises:
        StmemError: unknown dtype name, or a dtype this device cannot run.
    """
    name = (name or "float32").strip().lower()
    if name not in DTYPES:
        raise StmemError(f"Unknown dtype '{name}'; choose one of {list(DTYPES)}.")
    if name not in supported_dtypes(device):
        raise StmemError(
            f"{name} is not supported on {device.type}; choose one of {supported_dtypes(device)}."
        )
    return DTYPES[name]
