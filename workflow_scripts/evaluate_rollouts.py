"""evaluate_rollouts: dynamics + tokenizer + test-video stores -> results/eval/{evaluation}/.

Writes metrics.csv (long format: video, window, condition, sampler, step, metric, value),
summary.json (verdict, per condition: per-step means with bootstrap intervals, paired differences
to its baseline, frames/s; per-video means; checks; for an action model the controllability and NMI) and samples/ (a GIF and a filmstrip PNG for each of the first `samples` windows).
"""

from pathlib import Path

from latentwm.config.evaluation import EvalConfig
from latentwm.config.fields import from_dict
from latentwm.core.errors import one_line_errors
from latentwm.core.logs import logger, set_threads
from latentwm.data.store import stores_in
from latentwm.evaluation.rollouts import run
from latentwm.figures.samples import write_samples


def main(inp, out, cfg: dict, name: str, log_path=None, threads: int = 2) -> None:
    log = logger(log_path)
    with one_line_errors(log_path):
        set_threads(threads)
        ecfg = from_dict(EvalConfig, cfg, f"evaluations.{name}")
        videos = [Path(f).stem for f in inp["frames"]]  # results/frames/{video}.zarr
        # the other stores by video, each given as stores or shards (results/latents/test_000)
        paired = {k: stores_in(inp[k], videos) if inp.get(k) else None for k in ("latents", "actions", "truth")}
        summary, samples = run(
            dynamics_path=inp["dynamics"], tokenizer_path=inp["tokenizer"], stats_path=inp["stats"],
            videos=videos, frame_paths=inp["frames"], latent_paths=paired["latents"], cfg=ecfg,
            metrics_csv=out["metrics"], summary_json=out["summary"], name=name, log=log,
            action_paths=paired["actions"], truth_paths=paired["truth"],
        )
        listed = write_samples(samples, ecfg.context, Path(out["samples"]))
        log(f"[evaluate] {name}: wrote {out['metrics']}, {out['summary']} and {len(listed)} samples")


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(
        {"dynamics": sm.input.dynamics, "tokenizer": sm.input.tokenizer, "stats": sm.input.stats,
         "frames": list(sm.input.frames), "latents": list(sm.input.latents),
         # an action model's: the test videos' action stores (latent or given), and their true ones
         "actions": list(sm.input.get("test_actions", [])) or None, "truth": list(sm.input.get("truth", [])) or None},
        {"metrics": sm.output.metrics, "summary": sm.output.summary, "samples": sm.output.samples},
        sm.params.cfg, sm.wildcards.evaluation, sm.log[0], sm.threads,
    )
else:  # by hand: explicit paths, e.g. the rule's inputs; the evaluation's settings from a config file
    import argparse

    import yaml

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dynamics", required=True), p.add_argument("--tokenizer", required=True)
    p.add_argument("--stats", required=True, help="the latents' stats.json")
    p.add_argument("--frames", nargs="+", required=True, help="frame stores of the test videos (VIDEO.zarr)")
    p.add_argument("--latents", nargs="+", required=True, help="their latent stores in the same order, or the shard folders that hold them (results/latents/test_000)")
    p.add_argument("--config", help="a config file whose evaluations.NAME is used (none: the defaults)")
    p.add_argument("--name", default="default"), p.add_argument("--out", required=True), p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    cfg = ((yaml.safe_load(Path(a.config).read_text()) or {}).get("evaluations") or {}).get(a.name, {}) if a.config else {}
    d = Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    main(
        {"dynamics": a.dynamics, "tokenizer": a.tokenizer, "stats": a.stats, "frames": a.frames, "latents": a.latents},
        {"metrics": d / "metrics.csv", "summary": d / "summary.json", "samples": d / "samples"},
        cfg, a.name, None, a.threads,
    )
