"""diffusion.dtype=auto: the choice is a function of the device and the CPU's flags, and fp32 stays fp32."""
import logging

import pytest
import torch

from img2mesh.diffusion.devices import resolve_dtype
from img2mesh.diffusion.precision import auto_dtype, describe, native_bf16, parse_cpuinfo, torch_cpu_flags

CPU = torch.device("cpu")

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme sse sse2 avx avx2 fma avx512f avx512bw amx_bf16 avx512_bf16 amx_tile amx_int8
"""
SKYLAKE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 6148
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw avx512vl
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp sve bf16 i8mm
"""


@pytest.mark.parametrize("text, flag", [(SAPPHIRE_RAPIDS, "avx512_bf16"), (SKYLAKE, None), (GRAVITON3, "bf16"),
                                        ("", None)])
def test_native_bf16_is_read_from_the_cpuinfo_flags(text, flag):
    assert native_bf16(parse_cpuinfo(text)) == flag


def test_auto_picks_bf16_only_where_the_cpu_has_it():
    assert auto_dtype(CPU, parse_cpuinfo(SAPPHIRE_RAPIDS))[0] == torch.bfloat16
    assert auto_dtype(CPU, {"amx_bf16"})[0] == torch.bfloat16
    dtype, why = auto_dtype(CPU, parse_cpuinfo(SKYLAKE))
    assert dtype == torch.float32 and "no native bf16" in why
    assert auto_dtype(torch.device("cuda"), set())[0] == torch.float16  # CUDA: fp16 whatever the host CPU
    assert auto_dtype(torch.device("mps"), {"avx512_bf16"})[0] == torch.float32


def test_torch_capability_strings_count_only_when_present():
    capability = {"avx512_bf16": False, "amx_bf16": True, "avx2": True, "l2_cache_size": 1048576}
    assert torch_cpu_flags(capability) == {"amx_bf16", "avx2"}
    assert native_bf16(torch_cpu_flags(capability)) == "amx_bf16"
    assert native_bf16(torch_cpu_flags({"avx512_bf16": False, "amx_bf16": False})) is None


def test_named_precisions_are_kept_and_auto_says_what_it_chose(caplog):
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), (torch.float32, torch.float32)):
        assert resolve_dtype(name, CPU) == dtype  # fp32 stays fp32 on every CPU: the reference's numbers
    with caplog.at_level(logging.INFO, logger="img2mesh.diffusion.devices"):
        chosen = resolve_dtype("auto", CPU)
    assert chosen in (torch.float32, torch.bfloat16)
    assert any("diffusion.dtype=auto" in r.getMessage() for r in caplog.records)
    assert describe(chosen, "auto", "why")["dtype"] == {torch.float32: "fp32", torch.bfloat16: "bf16"}[chosen]
