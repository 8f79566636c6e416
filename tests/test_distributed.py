"""Data-parallel training on CPU (gloo): two ranks with half the batch each == one process.

The ranks are real processes (torch.multiprocessing spawn) joined through torch.distributed,
running the one training loop on real zarr latent stores and the real dynamics network.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from latentwm.config.dynamics import DataConfig, DynamicsConfig
from latentwm.config.train import TrainConfig
from latentwm.core.errors import PipelineError
from latentwm.core.ranks import Context
from latentwm.data.store import StoreWriter
from latentwm.data.windows import LatentWindows
from latentwm.models import checkpoint
from latentwm.models.dynamics.transformer import Dynamics
from latentwm.training.distributed import shard
from latentwm.training.loop import WithLoss, train

C, H, W = 4, 8, 8
GLOBAL_BATCH, STEPS = 4, 3


def latent_stores(root) -> list[str]:
    paths = []
    rng = np.random.default_rng(0)
    for i, n in enumerate([20, 17]):
        p = os.path.join(root, f"v{i}.zarr")
        with StoreWriter(p, (C, H, W), "float16", 8, {"tokenizer_hash": "t", "latent_shape": [C, H, W]}, compress=False) as w:
            w.append(rng.standard_normal((n, C, H, W)).astype(np.float16))
            w.commit()
        paths.append(p)
    return paths


def model() -> Dynamics:
    torch.manual_seed(0)
    cfg = DynamicsConfig(size="tiny", arch="transformer", latent_channels=C, latent_hw=(H, W), dim=32, depth=2, heads=2,
                         temporal_every=1, max_frames=4, k_max=8)  # fmt: skip
    return Dynamics(cfg)


def objective(m, z0):
    """Deterministic (no noise draws): predict clean latents from half-scaled ones at tau 0.5."""
    B, T = z0.shape[:2]
    tau = torch.full((B, T), 0.5)
    loss = ((m(0.5 * z0, tau, torch.full((B, T), 0.125)) - z0) ** 2).mean()
    return loss, {}


def run(root: str, tag: str) -> None:
    """Train STEPS steps on the global batch; rank 0 writes the final weights and curve under root."""
    cfg = TrainConfig(steps=STEPS, lr=3e-3, warmup=1, batch_size=GLOBAL_BATCH, log_every=1, checkpoint_every=2, device="cpu",
                      bf16=False)  # fp32: the two half-batches must add up to the whole to 2e-5
    m = model()
    final = train(
        WithLoss(m, objective), LatentWindows(sorted(str(p) for p in Path(root).glob("*.zarr")), DataConfig(window=4, batch_size=GLOBAL_BATCH), seed=1),
        cfg, name=tag, model_config={}, resume_path=f"{root}/{tag}_resume.pt",
        curve_path=f"{root}/{tag}_curve.csv", fingerprint="f",
    )  # fmt: skip
    if int(os.environ.get("RANK", "0")) == 0:
        checkpoint.save(f"{root}/{tag}.pt", {"model": final["model"], "rows": final["rows"]})


def rank_main(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    run(root, "ddp")
    # train() left the group on every rank (a group alive at exit aborts the process)
    assert not torch.distributed.is_initialized()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shards_partition_each_global_batch(tmp_path):
    lw = LatentWindows(latent_stores(tmp_path), DataConfig(window=4, batch_size=GLOBAL_BATCH), seed=1)
    halves = [shard(lw, Context(r, 2, r)) for r in range(2)]
    for i in (0, 5):
        assert torch.equal(torch.cat([h[i] for h in halves]), lw[i])
        assert halves[0][i].shape[0] == GLOBAL_BATCH // 2
    with pytest.raises(PipelineError, match="not divisible by 3 processes"):
        shard(lw, Context(0, 3, 0))[0]


@pytest.mark.slow
def test_two_ranks_half_batch_each_match_one_process(tmp_path):
    root = str(tmp_path)
    torch.set_num_threads(1)
    latent_stores(root)
    run(root, "single")  # one process, the whole batch of 4
    torch.multiprocessing.spawn(rank_main, args=(2, free_port(), root), nprocs=2, join=True)

    one, two = checkpoint.load(f"{root}/single.pt"), checkpoint.load(f"{root}/ddp.pt")
    init = model().state_dict()
    moved = max((one["model"][k] - init[k]).abs().max().item() for k in init)
    assert moved > 1e-3  # the steps changed the weights, so equality below means something
    diff = max((one["model"][k] - two["model"][k]).abs().max().item() for k in init)
    print(f"moved {moved:.3g}, 1 vs 2 ranks {diff:.3g}")
    assert diff < 2e-5, f"2 ranks x batch 2 vs 1 process x batch 4: weights differ by {diff}"
    # the logged loss is the mean over ranks, i.e. the loss of the whole batch
    for r1, r2 in zip(one["rows"], two["rows"]):
        assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-5)
    # rank 0 alone wrote the curve; the resume checkpoint holds both ranks' RNG states
    assert os.path.exists(f"{root}/ddp_curve.csv")
    rng = checkpoint.load(f"{root}/ddp_resume.pt")["rng"]
    assert isinstance(rng, list) and len(rng) == 2 and not torch.equal(rng[0], rng[1])
