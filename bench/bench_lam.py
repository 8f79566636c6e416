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
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import yaml

from latentwm.config.fields import from_dict
from latentwm.config.lam import LamStage
from latentwm.data.actions import nmi, read_store
from latentwm.data.store import open_store
from latentwm.evaluation.metrics import global_flow
from latentwm.models import checkpoint
from latentwm.training import encode, fit_lam


def stage_of(config: str, sets: list[str]) -> LamStage:
    section = (yaml.safe_load(Path(config).read_text()) or {}).get("lam") or {}
    for s in sets:
        key, _, value = s.partition("=")
        *path, last = key.split(".")
        d = section
        for k in path:
            d = d.setdefault(k, {})
        d[last] = yaml.safe_load(value)
    return from_dict(LamStage, section, "lam")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results"), p.add_argument("--config", default="config.yaml")
    p.add_argument("--set", nargs="*", default=[], help="lam keys, e.g. photometric=0.3 train.steps=3000")
    p.add_argument("--out", default="bench/out/lam/default"), p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    res, out = Path(a.results), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = json.loads((res / "splits.json").read_text())
    frames = {s: [res / "frames" / f"{v}.zarr" for v in splits[s]] for s in ("train", "val", "test")}
    stage = stage_of(a.config, a.set)
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
