"""What ``diffusion.dtype=auto`` picks, and why.

    dtype, why = auto_dtype(torch.device("cpu"))      # torch.bfloat16, "this CPU has native bf16 (avx512_bf16)"
    native_bf16({"avx2", "fma"})                       # None: emulated bf16 would be slower than fp32 here

CUDA: fp16 (the reference's precision). A CPU with bf16 instructions (x86: AVX512-BF16 or AMX-BF16; Arm: the
BF16 extension) runs the UNet's matrix products in bf16 at about twice fp32's speed; without them torch emulates
bf16 and is slower than fp32, so fp32 stays. Anything else (MPS): fp32. The flags come from /proc/cpuinfo where it
exists, else from the CPU features torch's own detector reports; a flag is never assumed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 (/proc/cpuinfo and torch's names), Arm's "Features"


def parse_cpuinfo(text: str) -> set[str]:
    """The CPU feature flags of a /proc/cpuinfo text (x86 ``flags``, Arm ``Features`` lines), lower case."""
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.lower().split())
    return flags


def torch_cpu_flags(capability: dict | None = None) -> set[str]:
    """The features torch's CPU detector reports as present (``torch._C._cpu._get_cpu_capability()``, a dict
    of name -> bool and sizes), by their /proc/cpuinfo names."""
    if capability is None:
        try:
            capability = torch._C._cpu._get_cpu_capability()
        except (AttributeError, RuntimeError):  # older torch: no such detector
            return set()
    return {name.lower() for name, value in capability.items() if value is True}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """This machine's CPU flags: /proc/cpuinfo's, and torch's detector's (macOS and Windows have no cpuinfo)."""
    flags = set()
    try:
        flags = parse_cpuinfo(Path(cpuinfo).read_text(errors="ignore"))
    except OSError:
        pass
    return flags | torch_cpu_flags()


def native_bf16(flags: Iterable[str]) -> str | None:
    """The first flag in ``flags`` that means bf16 runs natively (None: it would be emulated)."""
    flags = {f.lower() for f in flags}
    return next((f for f in BF16_FLAGS if f in flags), None)


def auto_dtype(device: torch.device, flags: Iterable[str] | None = None) -> tuple[torch.dtype, str]:
    """(dtype, the reason in words) for ``diffusion.dtype=auto`` on ``device``; ``flags``: the CPU's flags
    (None: read them from this machine)."""
    if device.type == "cuda":
        return torch.float16, "CUDA"
    if device.type != "cpu":
        return torch.float32, f"{device.type} device"
    flag = native_bf16(cpu_flags() if flags is None else flags)
    if flag:
        return torch.bfloat16, f"this CPU has native bf16 ({flag})"
    return torch.float32, "this CPU has no native bf16 (it would be emulated, slower than fp32)"


DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def describe(dtype: torch.dtype, requested, why: str = "") -> dict:
    """What run.json records of the precision: {"dtype": "bf16", "requested": "auto", "why": ...}."""
    out = {"dtype": DTYPE_NAMES.get(dtype, str(dtype)), "requested": str(requested or "auto")}
    if why:
        out["why"] = why
    return out


def precision_record(requested, device: torch.device, model=None) -> dict:
    """run.json's record of the views' precision: a given model's own dtype, else what ``requested`` resolves
    to on ``device`` (the same rule the loader applied)."""
    if model is not None:
        return describe(model.dtype, "the model as given")
    from .devices import chosen_dtype

    dtype, why = chosen_dtype(requested, device)
    return describe(dtype, requested or "auto", why)
