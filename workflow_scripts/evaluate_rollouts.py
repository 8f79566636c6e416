"""evaluate_rollouts: dynamics + tokenizer + test-video stores -> results/eval/{evaluation}/.

Writes metrics.csv (long format: video, window, condition, sampler, step, metric, value),
summary.json (verdict, per condition: per-step means with bootstrap intervals, paired differences
to its baseline, frames/s; per-video means; checks) and samples/ (a GIF and a filmstrip PNG for each of the first `samples` windows).
"""

from pathlib import Path

from latentwm.config import from_dict
from latentwm.errors import one_line_errors
from latentwm.evaluate import EvalConfig, run
from latentwm.samples import write_samples
from latentwm.logs import logger, set_threads


def main(inp, out, cfg: dict, name: str, log_path=None, threads: int = 2) -> None:
    log = logger(log_path)
    with one_line_errors(log_path):
        set_threads(threads)
        ecfg = from_dict(EvalConfig, cfg, f"evaluations.{name}")
        summary, samples = run(
            dynamics_path=inp["dynamics"], tokenizer_path=inp["tokenizer"], stats_path=inp["stats"],
            videos=inp["videos"], frame_paths=inp["frames"], latent_paths=inp["latents"], cfg=ecfg,
            metrics_csv=out["metrics"], summary_json=out["summary"], name=name, log=log,
        )
        listed = write_samples(samples, ecfg.context, Path(out["samples"]))
        log(f"[evaluate] {name}: wrote {out['metrics']}, {out['summary']} and {len(listed)} samples")


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(
        {"dynamics": sm.input.dynamics, "tokenizer": sm.input.tokenizer, "stats": sm.input.stats,
         "frames": list(sm.input.frames), "latents": list(sm.input.latents),
         "videos": [Path(f).stem for f in sm.input.frames]},  # results/frames/{video}.zarr
        {"metrics": sm.output.metrics, "summary": sm.output.summary, "samples": sm.output.samples},
        sm.params.cfg, sm.wildcards.evaluation, sm.log[0], sm.threads,
    )
else:  # by hand: python workflow_scripts/evaluate_rollouts.py --video VID ... [--config config.yaml --name default --out DIR]
    import argparse

    import yaml

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--video", nargs="+", required=True, help="test video ids (results/frames/ID.zarr, results/latents/ID.zarr)")
    p.add_argument("--config", default="config.yaml"), p.add_argument("--name", default="default")
    p.add_argument("--results", default="results"), p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="output directory (default RESULTS/eval/NAME)")
    a = p.parse_args()
    r = Path(a.results)
    cfg = (yaml.safe_load(Path(a.config).read_text()).get("evaluations") or {}).get(a.name, {})
    d = Path(a.out) if a.out else r / "eval" / a.name
    d.mkdir(parents=True, exist_ok=True)
    main(
        {"dynamics": r / "dynamics/dynamics.pt", "tokenizer": r / "tokenizer/tokenizer.pt", "stats": r / "latents/stats.json",
         "frames": [r / f"frames/{v}.zarr" for v in a.video], "latents": [r / f"latents/{v}.zarr" for v in a.video],
         "videos": a.video},
        {"metrics": d / "metrics.csv", "summary": d / "summary.json", "samples": d / "samples"},
        cfg, a.name, None, a.threads,
    )
