"""evaluate_rollouts: dynamics + tokenizer + test-video stores -> results/eval/{evaluation}/.

Writes metrics.csv (long format: video, window, condition, sampler, step, metric, value),
summary.json (verdict, per condition: per-step means with bootstrap intervals, paired differences
to its baseline, frames/s; per-video means; checks; for an action model the controllability and NMI) and samples/ (a GIF and a filmstrip PNG for each of the first `samples` windows).
"""

from pathlib import Path

from latentwm.config.evaluation import EvalConfig
from latentwm.config.fields import from_dict
from latentwm.data.store import stores_in
from latentwm.evaluation.rollouts import run
from latentwm.figures.samples import write_samples
from latentwm.pipeline.job import Job, outputs_in, section


def main(job: Job) -> None:
    inp, out, name = job.input, job.output, job.wildcards.evaluation
    cfg = from_dict(EvalConfig, job.params.cfg, f"evaluations.{name}")
    frame_paths = list(inp.frames)
    videos = [Path(f).stem for f in frame_paths]  # results/frames/{video}.zarr
    # the other stores by video, each given as stores or shards (results/latents/test_000); an action
    # model's: the test videos' action stores (latent or given), and their true ones
    paired = {k: stores_in(list(paths), videos) if paths else None
              for k, paths in (("latents", inp.latents), ("actions", inp.get("test_actions")), ("truth", inp.get("truth")))}
    summary, samples = run(
        dynamics_path=inp.dynamics, tokenizer_path=inp.tokenizer, stats_path=inp.stats,
        videos=videos, frame_paths=frame_paths, latent_paths=paired["latents"], cfg=cfg,
        metrics_csv=out.metrics, summary_json=out.summary, name=name, log=job.log,
        action_paths=paired["actions"], truth_paths=paired["truth"],
    )
    listed = write_samples(samples, cfg.context, Path(out.samples))
    job.log(f"[evaluate] {name}: wrote {out.metrics}, {out.summary} and {len(listed)} samples")


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: explicit paths, e.g. the rule's inputs; the evaluation's settings from a config file
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dynamics", required=True), p.add_argument("--tokenizer", required=True)
    p.add_argument("--stats", required=True, help="the latents' stats.json")
    p.add_argument("--frames", nargs="+", required=True, help="frame stores of the test videos (VIDEO.zarr)")
    p.add_argument("--latents", nargs="+", required=True, help="their latent stores in the same order, or the shard folders that hold them (results/latents/test_000)")
    p.add_argument("--config", help="a config file whose evaluations.NAME is used (none: the defaults)")
    p.add_argument("--name", default="default"), p.add_argument("--out", required=True), p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    Job.by_hand(__file__, {"dynamics": a.dynamics, "tokenizer": a.tokenizer, "stats": a.stats, "frames": a.frames, "latents": a.latents},
                outputs_in(a.out, {"metrics": "metrics.csv", "summary": "summary.json", "samples": "samples"}),
                {"cfg": section(a.config, "evaluations", a.name)}, a.threads, evaluation=a.name).run(main)
