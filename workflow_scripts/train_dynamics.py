"""train_dynamics: latents of the train videos -> results/dynamics/dynamics.pt (+ curve, health).

The checkpoint is the dict latentwm.train.train returns, plus "stats" (the normalisation the
model was trained under) and "tokenizer_hash" (the tokenizer whose latents it models), so that
evaluation can refuse latents from another tokenizer.
"""

import hashlib
import json
from pathlib import Path

import torch

from latentwm import checkpoint
from latentwm.config import from_dict, to_dict
from latentwm.data import LatentWindows
from latentwm.diffusion import DiffusionConfig, FlowObjective
from latentwm.dynamics import Dynamics, collapse_probe, resolve_config
from latentwm.errors import PipelineError, one_line_errors
from latentwm.logs import logger, set_threads
from latentwm.train import TrainConfig, train


def build(cfg: dict, stats: dict, latent_paths: list[str], log):
    """(model, objective, batches, train config) of the `dynamics` config section."""
    data = dict(cfg.get("data", {}))
    alt = dict(data.pop("alternating", None) or {})
    use_alt = alt.pop("enabled", False)
    window = data.get("window", 8)
    longest = max(alt["short_window"], alt["long_window"]) if use_alt else window
    model_dict = dict(cfg.get("model") or {})
    if model_dict.get("max_frames") is None:  # rollouts attend no farther than training did
        model_dict["max_frames"] = longest
    model_cfg = resolve_config(model_dict, stats["latent_shape"])
    if longest > model_cfg.max_frames:
        raise PipelineError(
            f"dynamics.data window {longest} exceeds dynamics.model.max_frames {model_cfg.max_frames}; "
            "raise max_frames or shorten the window"
        )
    obj_cfg = from_dict(DiffusionConfig, {**cfg.get("objective", {}), "k_max": model_cfg.k_max}, "dynamics.objective")
    train_cfg = from_dict(TrainConfig, {**cfg.get("train", {}), "batch_size": data.get("batch_size", 16)}, "dynamics.train")
    batches = LatentWindows(
        latent_paths,
        window=window,
        batch_size=train_cfg.batch_size,
        seed=train_cfg.seed,
        stride=data.get("stride", 1),
        stats=stats,
        expect={"tokenizer_hash": stats["tokenizer_hash"], "latent_shape": stats["latent_shape"]},
        alternating=alt if use_alt else None,
        log=log,
    )
    return Dynamics(model_cfg), FlowObjective(obj_cfg), batches, train_cfg


def fingerprint(cfg: dict, stats_text: str, model_config: dict) -> str:
    """Config + input identity: a resume file from another config or other latents is ignored.

    The resolved model config joins in, so a preset or default that changed in the code since
    the resume file was written starts fresh too instead of failing to load.
    """
    text = json.dumps([cfg, model_config], sort_keys=True, default=list) + stats_text
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def main(latents, stats_path, cfg, out, curve, health, resume, log_path=None, threads=2):
    log = logger(log_path)
    with one_line_errors(log_path):
        set_threads(threads)
        stats_text = Path(stats_path).read_text()
        stats = json.loads(stats_text)
        torch.manual_seed(int(cfg.get("train", {}).get("seed", 0)))  # the model's initial weights
        model, objective, batches, train_cfg = build(cfg, stats, list(latents), log)
        n = sum(p.numel() for p in model.parameters())
        log(f"[dynamics] {n / 1e6:.2f}M parameters, {len(batches.paths)} videos, config {to_dict(model.cfg)}")
        final = train(
            model,
            objective,
            batches,
            train_cfg,
            name="dynamics",
            model_config=to_dict(model.cfg),
            resume_path=resume,
            curve_path=curve,
            fingerprint=fingerprint(cfg, stats_text, to_dict(model.cfg)),
            log=log,
            probe=collapse_probe(model.cfg, seed=train_cfg.seed),
            health_path=health,
        )
        final["stats"] = {k: stats[k] for k in ("mean", "std", "latent_shape", "tokenizer_hash")}
        final["tokenizer_hash"] = stats["tokenizer_hash"]
        checkpoint.save(out, final)
        Path(resume).unlink(missing_ok=True)  # the run is complete; the output supersedes it
        log(f"[dynamics] wrote {out}")


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(
        sm.input.latents,
        sm.input.stats,
        sm.params.cfg,
        sm.output.checkpoint,
        sm.output.curve,
        sm.output.health,
        sm.params.resume,
        sm.log[0],
        sm.threads,
    )
elif __name__ == "__main__":  # by hand: python workflow_scripts/train_dynamics.py config.yaml STATS.json LATENTS.zarr... --out DIR
    import argparse

    import yaml

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", help="a config.yaml; its `dynamics` section is used")
    p.add_argument("stats"), p.add_argument("latents", nargs="+")
    p.add_argument("--out", default="results/dynamics"), p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    d = Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(Path(a.config).read_text())["dynamics"]
    main(a.latents, a.stats, cfg, d / "dynamics.pt", d / "train_curve.csv", d / "health.json", d / "resume.pt", None, a.threads)
