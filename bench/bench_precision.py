"""Training step time of every trained component in fp32 and under bfloat16 autocast, and the matmul peaks.

    python bench/bench_precision.py [--threads 2] [--steps 12]

Each component is built at its default config on the default data's shapes (64x64 frames, 8x16x16
latents) and trained on random inputs of its default batch: the tokenizer (16 frames), the conv
dynamics network with its flow objective (32 windows of 5), the latent action model (32 windows of
2 frames). Median of the timed steps after two warm-up steps. bf16 only pays where the hardware runs
it (latentwm.core.device.native_bf16: a GPU, or a CPU with AMX or AVX-512 BF16); elsewhere expect it slower than fp32.
"""

from __future__ import annotations

import argparse
import time

import torch

from latentwm.config.dynamics import DynamicsStage
from latentwm.config.lam import LamStage
from latentwm.config.tokenizer import TokenizerStage
from latentwm.core.device import native_bf16
from latentwm.models.dynamics import network
from latentwm.models.flow import FlowObjective
from latentwm.models.lam import Lam
from latentwm.models.tokenizer import Tokenizer


def components():
    """name -> (module, loss function of the module, batch): the default stages' shapes."""
    tok = Tokenizer(TokenizerStage().model)
    dyn = DynamicsStage()
    net = network(dyn.model_config([8, 16, 16]))
    objective = FlowObjective(dyn.objective, net.cfg.k_max, source=(net.cfg.source, net.cfg.source_noise))
    lam_stage = LamStage()
    lam = Lam(lam_stage.model)
    frames = torch.randint(0, 256, (dyn.train.batch_size, 5, 3, 64, 64), dtype=torch.uint8)
    return {
        "tokenizer": (tok, tok, frames[:16, 0]),
        "dynamics (conv)": (net, lambda b: objective(net, b), torch.randn(dyn.train.batch_size, dyn.data.window, 8, 16, 16)),
        "latent action model": (lam, lam, frames[:, : lam_stage.model.context + 1]),
    }


def step_ms(module, loss_fn, batch, bf16: bool, steps: int) -> float:
    opt = torch.optim.AdamW(module.parameters(), 1e-4)
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    times = sorted(times[2:])
    return 1000 * times[len(times) // 2]


def matmul_peak(dtype, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=12)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"{a.threads} threads; native bf16 here: {native_bf16(torch.device('cpu'))}")
    print("| component | fp32 ms/step | bf16 ms/step | speed-up |\n|---|---:|---:|---:|")
    for name, (module, fn, batch) in components().items():
        fp32, bf16 = step_ms(module, fn, batch, False, a.steps), step_ms(module, fn, batch, True, a.steps)
        print(f"| {name} | {fp32:.1f} | {bf16:.1f} | {fp32 / bf16:.2f}x |")
    f32, b16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"matmul peak (2048^3, best of 10): fp32 {f32:.1f} GFLOP/s, bf16 {b16:.1f} GFLOP/s ({b16 / f32:.1f}x)")


if __name__ == "__main__":
    main()
