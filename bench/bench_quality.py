"""Quality vs compute: the world model at several training budgets, against copy-last and a learned reference.

    python bench/bench_quality.py --results results --config config.yaml [--steps 300 1200 4800]
        [--out bench/out/quality/NAME] [--threads 2] [--name NAME] [--no-reference]

For each budget N (optimizer steps):
  world model  the config's `dynamics` section with train.steps = N (train.warmup lowered to N // 10
               when larger), trained on the train videos' latents by latentwm.training.fit_dynamics.fit
               with the val videos' latents held out, as the rule does (so a run whose held-out loss
               stops falling anneals and ends before N: the table says where), wall clock timed, evaluated by latentwm.evaluation.rollouts.run on the test videos with
               `evaluations.default`, as the evaluate_rollouts rule does
  reference    bench/reference.py's residual conv next-latent predictor, trained for the same wall
               clock seconds and evaluated by latentwm.evaluation.rollouts.evaluate with its own rollout (one
               deterministic "sampler", no model_mean)
Read from each summary.json: PSNR at step 1 and step 8 (copy-last's beside it), sharpness at step 8,
the teacher-forced gap (teacher_forced minus copy_previous, PSNR at step 1 and mean over steps) and
the verdict: the steps 1..k where PSNR beats copy-last (95% bootstrap interval above 0).

FLOP utilisation: model FLOPs of one training step (FlopCounterMode over the real objective's
forward + backward on real batches) times the training loop's steps/s (median of the largest
budget's curve), against the best fp32 matmul rate this machine reaches with the same threads,
measured right after that budget's training (the machine is shared: both under the same load).

Everything of a budget lives in OUT/steps{N}/ (checkpoints, curves, evaluations) and is reused on a
rerun, so a killed run resumes at the budget it was in; a budget whose dynamics config changed is
redone. Writes OUT/table.md and prints it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
import yaml
from reference import ConvPredictor, fit_reference, reference_rollout
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from latentwm.config.dynamics import DynamicsStage
from latentwm.config.evaluation import EvalConfig, SamplerConfig
from latentwm.config.fields import from_dict, to_dict
from latentwm.config.train import TrainConfig
from latentwm.core.logs import logger, set_threads
from latentwm.data.store import video_store
from latentwm.evaluation.rollouts import evaluate, run
from latentwm.evaluation.summary import label
from latentwm.training.fit_dynamics import build, fit

SHOW_STEP = 8  # the later horizon step the table shows (the horizon when shorter)


def budget_config(dynamics: dict, steps: int) -> dict:
    """The `dynamics` section with train.steps = steps; a warmup longer than a tenth of it shrinks."""
    cfg = copy.deepcopy(dynamics)
    train = cfg.setdefault("train", {})
    train["steps"] = steps
    if train.get("warmup", TrainConfig.warmup) > steps / 10:
        train["warmup"] = max(1, steps // 10)
    return cfg


def train_world_model(d: Path, cfg: dict, latents: list[Path], val: list[Path], stats_path: Path, tokenizer: Path,
                      log) -> dict:
    """Train (or reuse) one budget's world model in d, scoring the val videos' latents as the rule does (the
    held-out loss that ends a run at its plateau); returns {config, seconds, loop_steps_per_s, matmul_peak, ran,
    annealed_at}."""
    meta_path = d / "dynamics.json"
    if meta_path.exists() and (d / "dynamics.pt").exists():
        meta = json.loads(meta_path.read_text())
        if meta["config"] == cfg:
            log(f"[bench] reusing {d / 'dynamics.pt'} ({meta['seconds']:.0f} s of training)")
            return meta
        log(f"[bench] {d}: the dynamics config changed; redoing this budget")
    shutil.rmtree(d, ignore_errors=True)  # also a killed run's resume.pt: the wall clock is of one whole run
    d.mkdir(parents=True)
    t0 = time.perf_counter()
    out = SimpleNamespace(checkpoint=d / "dynamics.pt", curve=d / "train_curve.csv", health=d / "health.json")
    inputs = SimpleNamespace(latents=latents, stats=stats_path, val=val, tokenizer=tokenizer)
    fit(from_dict(DynamicsStage, cfg, "dynamics"), inputs, out, d / "resume.pt", log)
    seconds = time.perf_counter() - t0
    curve = pd.read_csv(d / "train_curve.csv")
    # the matmul peak right after training, under the same machine load as the steps/s it is compared with
    health = json.loads((d / "health.json").read_text())
    meta = {"config": cfg, "seconds": seconds, "loop_steps_per_s": float(curve["batches_per_s"].median()),
            "matmul_peak": matmul_peak(), "ran": health.get("steps"), "annealed_at": health.get("annealed_at")}
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


def train_reference(d: Path, seconds: float, latents: list[Path], stats: dict, log) -> tuple[ConvPredictor, int]:
    """Train (or reuse) the reference for `seconds` of wall clock; returns (model, its optimizer steps)."""
    path = d / "reference.pt"
    if path.exists():
        state = torch.load(path, weights_only=True)
        model = ConvPredictor(state["channels"])
        model.load_state_dict(state["model"])
        log(f"[bench] reusing {path} ({state['steps']} steps)")
        return model.eval(), state["steps"]
    model, steps = fit_reference(latents, stats, seconds, log=log)
    torch.save({"model": model.state_dict(), "channels": int(stats["latent_shape"][0]), "steps": steps,
                "seconds": seconds}, path)  # fmt: skip
    return model, steps


def evaluated(out: Path, cfg: EvalConfig, go) -> dict:
    """summary.json in `out`, from `go(metrics_csv, summary_json)` unless there for the same settings."""
    summary = out / "summary.json"
    if not (summary.exists() and json.loads(summary.read_text())["config"] == to_dict(cfg)):
        out.mkdir(parents=True, exist_ok=True)
        go(out / "metrics.csv", summary)
    return json.loads(summary.read_text())


def rows_of(summary: dict, k: int) -> list[dict]:
    """One row per model condition (sampler) of an evaluation summary, PSNR at steps 1 and k."""
    c = summary["conditions"]
    copy_psnr = c["copy_last"]["per_step"]["psnr"]
    rows = []
    for e in c.values():
        if e["condition"] != "model":
            continue
        tf = c.get(label("teacher_forced", e["sampler"]))
        gap = tf["vs_baseline"]["psnr"]["diff"] if tf else [np.nan]
        rows.append({
            "sampler": e["sampler"],
            "psnr_1": e["per_step"]["psnr"][0], "copy_1": copy_psnr[0],
            "psnr_k": e["per_step"]["psnr"][k - 1], "copy_k": copy_psnr[k - 1],
            "sharpness_k": e["per_step"]["sharpness"][k - 1],
            "tf_gap_1": gap[0], "tf_gap_mean": float(np.nanmean(gap)) if np.isfinite(gap).any() else np.nan,
            "beats": e["verdict"]["beats_steps"]["psnr"], "horizon": len(copy_psnr),
        })  # fmt: skip
    return rows


def train_step_flops(cfg: dict, stats: dict, latents: list[Path], tokenizer: Path, draws: int = 8) -> float:
    """Model FLOPs of one training step: the objective's forward + backward on real batches.

    The mean over `draws` batches: shortcut forcing draws which samples get the two extra
    (no-grad) bootstrap passes, so one step's count varies. Attention runs on the math backend
    here, whose matmuls the counter sees (it has no formula for the fused CPU kernel); same FLOPs.
    """
    torch.manual_seed(0)
    model, batches = build(from_dict(DynamicsStage, cfg, "dynamics"), stats, latents, log=lambda m: None,
                           tokenizer_path=tokenizer)
    model.train()
    total = 0
    for i in range(draws):
        with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
            loss, _ = model(batches[i])
            loss.backward()
        total += counter.get_total_flops()
        model.zero_grad(set_to_none=True)
    return total / draws


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 FLOP/s of an n x n matmul over `repeats` timings (the least disturbed by load)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def table(results: list[dict], k: int) -> str:
    lines = [f"| model | steps (run; annealed at) | wall min | PSNR step 1 (copy-last) | PSNR step {k} (copy-last) | sharpness step {k} "
             "| teacher-forced - copy-previous PSNR, step 1 / mean | beats copy-last (PSNR steps) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        tf = "-" if np.isnan(r["tf_gap_1"]) else f"{r['tf_gap_1']:+.2f} / {r['tf_gap_mean']:+.2f} dB"
        lines.append(
            f"| {r['model']} | {r['steps']}{r.get('ran_text', '')} | {r['seconds'] / 60:.1f} | {r['psnr_1']:.2f} ({r['copy_1']:.2f}) "
            f"| {r['psnr_k']:.2f} ({r['copy_k']:.2f}) | {r['sharpness_k']:.2f} | {tf} | {r['beats']}/{r['horizon']} |"
        )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, required=True, help="a finished pipeline's results folder")
    p.add_argument("--config", type=Path, required=True, help="its config.yaml (dynamics, evaluations.default)")
    p.add_argument("--steps", type=int, nargs="+", default=[300, 1200, 4800], help="training budgets")
    p.add_argument("--name", help="label of this run (default: the folder holding --results)")
    p.add_argument("--out", type=Path, help="scratch folder (default bench/out/quality/NAME)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-reference", action="store_true", help="only the world model (the reference doubles the time)")
    a = p.parse_args()
    name = a.name or a.results.resolve().parent.name
    out = a.out or Path(__file__).resolve().parent / "out" / "quality" / name
    out.mkdir(parents=True, exist_ok=True)
    log = logger(str(out / "bench.log"))
    set_threads(a.threads)

    r = a.results
    config = yaml.safe_load(a.config.read_text())
    ecfg = from_dict(EvalConfig, (config.get("evaluations") or {}).get("default", {}), "evaluations.default")
    first = ecfg.samplers[0]  # the reference ignores its sampler: one, named for what it is
    ref_cfg = dataclasses.replace(ecfg, samplers=[SamplerConfig("reference", first.kind, first.steps)], mean_samples=0)
    k = min(SHOW_STEP, ecfg.horizon)
    splits = json.loads((r / "splits.json").read_text())
    train_latents = [video_store(r / "latents", v) for v in splits["train"]]
    val_latents = [video_store(r / "latents", v) for v in splits["val"]]
    stats_path = r / "latents/stats.json"
    stats = json.loads(stats_path.read_text())
    inputs = dict(tokenizer_path=r / "tokenizer/tokenizer.pt", stats_path=stats_path, videos=splits["test"],
                  frame_paths=[r / f"frames/{v}.zarr" for v in splits["test"]],
                  latent_paths=[video_store(r / "latents", v) for v in splits["test"]], log=log)  # fmt: skip

    results, metas = [], {}
    for steps in a.steps:
        d = out / f"steps{steps}"
        cfg = budget_config(config["dynamics"], steps)
        log(f"[bench] budget {steps} steps: world model")
        meta = metas[steps] = train_world_model(d, cfg, train_latents, val_latents, stats_path,
                                                r / "tokenizer/tokenizer.pt", log)
        ran = f" ({meta.get('ran')}; {meta['annealed_at']})" if meta.get("annealed_at") else f" ({meta.get('ran')})"
        wm = evaluated(d / "eval_world_model", ecfg, lambda csv, js: run(
            dynamics_path=d / "dynamics.pt", cfg=ecfg, metrics_csv=csv, summary_json=js, name=f"steps{steps}", **inputs))
        for row in rows_of(wm, k):
            results.append({"model": f"world model, {row['sampler']}", "steps": steps, "seconds": meta["seconds"],
                            "ran_text": ran, **row})
        if a.no_reference:
            continue
        log(f"[bench] budget {steps} steps: reference, {meta['seconds']:.0f} s")
        ref, ref_steps = train_reference(d, meta["seconds"], train_latents, stats, log)
        rs = evaluated(d / "eval_reference", ref_cfg, lambda csv, js: evaluate(
            ref, cfg=ref_cfg, metrics_csv=csv, summary_json=js, name=f"reference{steps}", rollout=reference_rollout,
            **inputs))  # fmt: skip
        for row in rows_of(rs, k):
            results.append({"model": f"reference ({ref_steps} steps)", "steps": steps, "seconds": meta["seconds"], **row})

    # FLOP utilisation of the training step, at the largest budget's measured speed
    top = max(a.steps)
    flops = train_step_flops(budget_config(config["dynamics"], top), stats, train_latents, r / "tokenizer/tokenizer.pt")
    peak = metas[top].get("matmul_peak") or matmul_peak()
    # the steps the run took (a plateau can end it before its budget), over its wall clock
    loop, wall = metas[top]["loop_steps_per_s"], (metas[top].get("ran") or top) / metas[top]["seconds"]
    precision = metas[top]["config"].get("train", {}).get("bf16", TrainConfig.bf16)
    util = (f"FLOP utilisation ({a.threads} threads, {'bf16 where native' if precision else 'fp32'} training): "
            f"{flops / 1e9:.3f} GFLOP per training step (objective forward + "
            f"backward) x {loop:.2f} steps/s (training loop, median of the {top}-step curve) = {flops * loop / 1e9:.2f} "
            f"GFLOP/s; fp32 matmul peak (2048^3, best of 10) {peak / 1e9:.1f} GFLOP/s: **{100 * flops * loop / peak:.1f}%** "
            f"({100 * flops * wall / peak:.1f}% at the whole fit's {wall:.2f} steps/s, setup and probes included)")
    text = (f"Quality vs compute: {name} ({len(splits['train'])} train videos, {len(splits['test'])} test videos, "
            f"{wm['conditions']['copy_last']['windows']} windows, horizon {ecfg.horizon})\n\n{table(results, k)}\n\n{util}\n")
    (out / "table.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
