"""evaluate_refiner: refiner + tokenizer + test-video stores -> results/refiner/eval/.

Writes metrics.csv (long format: video, start, spacing, position, condition, metric, value),
summary.json (the verdict; per spacing, condition and position the means with bootstrap intervals;
the refiners' paired differences to linear interpolation, the pixel crossfade and the nearest
keyframe) and samples/ (a filmstrip PNG for each of the first `samples` windows).
"""

from pathlib import Path

from latentwm.config.fields import from_dict
from latentwm.config.refiner import RefinerEval
from latentwm.data.store import stores_in
from latentwm.evaluation.refiner import evaluate
from latentwm.figures.samples import filmstrip
from latentwm.pipeline.job import Job, outputs_in, section


def main(job: Job) -> None:
    inp, out = job.input, job.output
    cfg = from_dict(RefinerEval, job.params.cfg, "refiner.evaluation")
    frame_paths = list(inp.frames)
    videos = [Path(f).stem for f in frame_paths]  # results/frames/{video}.zarr
    _, samples = evaluate(refiner_path=inp.refiner, tokenizer_path=inp.tokenizer, videos=videos, frame_paths=frame_paths,
                          latent_paths=stores_in(list(inp.latents), videos), cfg=cfg, metrics_csv=out.metrics,
                          summary_json=out.summary, log=job.log)
    d = Path(out.samples)
    d.mkdir(parents=True, exist_ok=True)
    for s in samples:
        filmstrip(s["truth"], s["predictions"], 1, d / f"{s['name']}.png",
                  f"{s['name']}: keyframes at the first and every {s['spacing']}th frame; rows filled between them")
    job.log(f"[refiner] wrote {out.metrics}, {out.summary} and {len(samples)} filmstrips")


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: explicit paths; the settings from a config file's refiner.evaluation
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--refiner", required=True), p.add_argument("--tokenizer", required=True)
    p.add_argument("--frames", nargs="+", required=True, help="frame stores of the test videos (VIDEO.zarr)")
    p.add_argument("--latents", nargs="+", required=True, help="their latent stores, or the shard folders that hold them")
    p.add_argument("--config", help="a config file whose refiner.evaluation is used (none: the defaults)")
    p.add_argument("--out", required=True), p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    Job.by_hand(__file__, {"refiner": a.refiner, "tokenizer": a.tokenizer, "frames": a.frames, "latents": a.latents},
                outputs_in(a.out, {"metrics": "metrics.csv", "summary": "summary.json", "samples": "samples"}),
                {"cfg": section(a.config, "refiner", "evaluation")}, a.threads).run(main)
