"""Latent actions against the player's true inputs: does a LAM's code mean a movement?

    python bench/bench_lam.py --results results --config config.yaml [--set photometric=0.3 ...]
        [--out bench/out/lam/NAME] [--threads 2]

Needs a finished run with true actions (`dynamics.actions: given`, e.g. configs/real_doom.yaml):
its frame stores, splits.json and given action stores. Trains the `lam` section of the config (keys
overridden by --set) on the train videos' frames with latentwm.training.fit_lam.fit, as train_lam does, labels
every transition of the test videos, and reports against the true actions on them:
  nmi          normalised mutual information of codes and true actions (chance: about 0)
  probe        accuracy of the best code -> action map (each code names its most frequent true
               action), next to always naming the most frequent action
  flow         per code: the share of transitions and the mean horizontal optical flow of the true
               frames it labels (px per frame; > 0 the view's content moves right: a left turn)
  perplexity   exp of the entropy of the test codes
Writes OUT/result.json and prints one table.

Two calibrations of the same footage, with the same model and steps (no LAM trained):
  --ceiling    the inverse network trained with the true inputs as labels (cross-entropy on frames t,
               t+1): its test NMI and accuracy bound what a code read from two frames can say of them
  --oracle     the forward model given the true input (a learned vector per input) instead of a code:
               its test gain (loss with "no action" minus with the input, share of the loss) is what
               the input is worth to the LAM's objective
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from latentwm.config.fields import from_dict
from latentwm.config.lam import LamStage
from latentwm.data.actions import nmi, read_store
from latentwm.data.store import open_store
from latentwm.evaluation.metrics import global_flow
from latentwm.models import checkpoint
from latentwm.models.lam import build
from latentwm.pipeline.job import section
from latentwm.training import encode, fit_lam


def stage_of(config: str, sets: list[str]) -> LamStage:
    cfg = section(config, "lam")
    for s in sets:
        key, _, value = s.partition("=")
        *path, last = key.split(".")
        d = cfg
        for k in path:
            d = d.setdefault(k, {})
        d[last] = yaml.safe_load(value)
    return from_dict(LamStage, cfg, "lam")


def transitions(res: Path, videos: list[str]):
    """Every transition t -> t+1 of these videos: frames (N, 2, 3, H, W) uint8 and true inputs (N,)."""
    x, a = [], []
    for v in videos:
        f = torch.from_numpy(np.asarray(open_store(res / "frames" / f"{v}.zarr")[:]))
        x.append(torch.stack([f[:-1], f[1:]], 1))
        a.append(torch.from_numpy(read_store(res / "actions" / "given" / f"{v}.zarr")[1:]).long())
    return torch.cat(x), torch.cat(a)


def calibrate(stage: LamStage, res: Path, splits: dict, oracle: bool) -> dict:
    """Train the LAM's inverse network on the true inputs (ceiling) or its forward model given them
    (oracle) for lam.train.steps batches of the train transitions; score the test transitions."""
    (x, a), (tx, ta) = transitions(res, splits["train"]), transitions(res, splits["test"])
    torch.manual_seed(stage.train.seed)
    model = build(stage, list(x.shape[2:]))
    model.scale_to(x[:256, 0])
    n = int(max(a.max(), ta.max())) + 1
    if oracle:
        head = nn.Embedding(n, stage.model.code_dim)
        params = [p for k, p in model.named_parameters() if k.startswith("fwd_") or k == "null"] + list(head.parameters())
    else:
        head = nn.Linear(2 * stage.model.width, n)
        params = [p for k, p in model.named_parameters() if k.startswith("inv_") and not k.startswith("inv_out")]
        params += list(head.parameters())

    def run(batch, acts, null=None):  # oracle: forward errors (B,); ceiling: logits (B, n)
        z = model.cells(batch)
        if oracle:
            code = F.normalize(head(acts), dim=1)
            if null is not None:
                code = torch.where(null[:, None], model.null.expand(len(acts), -1), code)
            return ((model.predict(z[:, :1], code) - z[:, 1]) ** 2).mean((1, 2, 3))
        return head(model.features(z[:, 0], z[:, 1]))

    opt = torch.optim.AdamW(params, lr=stage.train.lr)
    for step in range(stage.train.steps):
        for g in opt.param_groups:
            g["lr"] = stage.train.lr * min(1.0, (step + 1) / stage.train.warmup)
        i = torch.randint(len(x), (stage.train.batch_size,))
        null = torch.rand(len(i)) < stage.null_action
        loss = run(x[i], a[i], null).mean() if oracle else F.cross_entropy(run(x[i], a[i]), a[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        chunks = [(tx[i:i + 256], ta[i:i + 256]) for i in range(0, len(tx), 256)]
        if oracle:
            with_input = torch.cat([run(b, c) for b, c in chunks]).mean()
            without = torch.cat([run(b, c, torch.ones(len(c), dtype=torch.bool)) for b, c in chunks]).mean()
            return {"mode": "oracle", "loss_with_input": float(with_input), "loss_without": float(without),
                    "gain": float(without - with_input), "gain_share": float((without - with_input) / without)}
        pred = torch.cat([run(b, c).argmax(1) for b, c in chunks]).numpy()
    t = ta.numpy()
    return {"mode": "ceiling", "nmi": nmi(pred, t), "accuracy": float((pred == t).mean()),
            "majority": float(np.bincount(t).max() / len(t)), "transitions": len(t)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results"), p.add_argument("--config", default="config.yaml")
    p.add_argument("--set", nargs="*", default=[], help="lam keys, e.g. photometric=0.3 train.steps=3000")
    p.add_argument("--out", default="bench/out/lam/default"), p.add_argument("--threads", type=int, default=2)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--ceiling", action="store_true", help="the inverse network trained on the true inputs instead")
    mode.add_argument("--oracle", action="store_true", help="the forward model given the true inputs instead")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    res, out = Path(a.results), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = json.loads((res / "splits.json").read_text())
    frames = {s: [res / "frames" / f"{v}.zarr" for v in splits[s]] for s in ("train", "val", "test")}
    stage = stage_of(a.config, a.set)
    if a.ceiling or a.oracle:
        result = calibrate(stage, res, splits, a.oracle)
        (out / "result.json").write_text(json.dumps({"set": a.set, **result}, indent=1) + "\n")
        print(f"| {' '.join(a.set) or 'config'} | " + " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                              for k, v in result.items()) + " |")
        return
    ckpt_path = out / "lam.pt"
    if not ckpt_path.exists():
        o = SimpleNamespace(checkpoint=ckpt_path, curve=out / "train_curve.csv", metrics=out / "metrics.json")
        fit_lam.fit(stage, SimpleNamespace(frames=frames["train"], val=frames["val"]), o, out / "resume.pt")
    ckpt = checkpoint.load(ckpt_path)
    model = checkpoint.build_model(ckpt, kind="lam").eval()
    codes, truth, dx = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for v, f in zip(splits["test"], frames["test"]):
            encode.encode_actions(model, ckpt, f, Path(tmp) / f"{v}.zarr", "bench", log=lambda m: None)
            codes.append(read_store(Path(tmp) / f"{v}.zarr")[1:])
            truth.append(read_store(res / "actions" / "given" / f"{v}.zarr")[1:])
            x = torch.from_numpy(np.asarray(open_store(f)[:])).float() / 255
            dx.append(global_flow(x[:-1], x[1:])[:, 0].numpy())
    c, t, dx = np.concatenate(codes), np.concatenate(truth), np.concatenate(dx)
    probe = sum(np.bincount(t[c == k]).max() for k in np.unique(c)) / len(c)
    used = np.bincount(c, minlength=stage.model.codes) / len(c)
    flow = {int(k): {"share": float(used[k]), "dx": float(dx[c == k].mean()) if used[k] else None}
            for k in range(stage.model.codes)}
    result = {"set": a.set, "transitions": len(c), "nmi": nmi(c, t), "probe": probe,
              "majority": float(np.bincount(t).max() / len(t)),
              "perplexity": float(np.exp(-(used[used > 0] * np.log(used[used > 0])).sum())), "flow": flow}
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"| {' '.join(a.set) or 'config'} | {result['nmi']:.3f} | {probe:.3f} (majority {result['majority']:.3f}) | "
          f"{result['perplexity']:.2f} | " + ", ".join(f"{k}: {r['share']:.2f} / {r['dx']:+.2f}" for k, r in flow.items()
                                                        if r["dx"] is not None) + " |")


if __name__ == "__main__":
    main()
