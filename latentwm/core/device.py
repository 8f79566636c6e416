"""Where a job runs: the device it picks and whether bf16 is native there."""

from __future__ import annotations

import torch

from latentwm.core.errors import PipelineError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("device 'cuda' requested but no GPU is visible; set device: auto or cpu")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matmuls and convs run in hardware here: any CUDA GPU, or a CPU with AMX tiles or
    AVX-512 BF16 (oneDNN's bf16 kernels; the conv dynamics step 2.6x faster than fp32 with AMX, 1.7x
    with AVX-512 BF16, on 2 cores: bench/README.md). Elsewhere bf16 is emulated and slower than fp32,
    so the loop stays fp32."""
    if device.type == "cuda":
        return True
    # private in torch 2.x: a check that is absent means no
    checks = (getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return device.type == "cpu" and any(bool(check and check()) for check in checks)
