"""evaluate_refiner: refiner + tokenizer + test-video stores -> results/refiner/eval/.

Writes metrics.csv (long format: video, start, spacing, position, condition, metric, value),
summary.json (the verdict; per spacing, condition and position the means with bootstrap intervals;
the refiners' paired differences to linear interpolation, the pixel crossfade and the nearest
keyframe) and samples/ (a filmstrip PNG for each of the first `samples` windows).
"""

from pathlib import Path

from latentwm.config.fields import from_dict
from latentwm.config.refiner import RefinerEval
from latentwm.core.errors import one_line_errors
from latentwm.core.logs import logger, set_threads
from latentwm.data.store import stores_in
from latentwm.evaluation.refiner import evaluate
from latentwm.figures.samples import filmstrip


def main(inp: dict, out: dict, cfg: dict, log_path=None, threads: int = 2) -> None:
    log = logger(log_path)
    with one_line_errors(log_path):
        set_threads(threads)
        ecfg = from_dict(RefinerEval, cfg, "refiner.evaluation")
        videos = [Path(f).stem for f in inp["frames"]]  # results/frames/{video}.zarr
        _, samples = evaluate(refiner_path=inp["refiner"], tokenizer_path=inp["tokenizer"], videos=videos,
                              frame_paths=inp["frames"], latent_paths=stores_in(inp["latents"], videos), cfg=ecfg,
                              metrics_csv=out["metrics"], summary_json=out["summary"], log=log)
        d = Path(out["samples"])
        d.mkdir(parents=True, exist_ok=True)
        for s in samples:
            filmstrip(s["truth"], s["predictions"], 1, d / f"{s['name']}.png",
                      f"{s['name']}: keyframes at the first and every {s['spacing']}th frame; rows filled between them")
        log(f"[refiner] wrote {out['metrics']}, {out['summary']} and {len(samples)} filmstrips")


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main({"refiner": sm.input.refiner, "tokenizer": sm.input.tokenizer, "frames": list(sm.input.frames),
          "latents": list(sm.input.latents)},
         {"metrics": sm.output.metrics, "summary": sm.output.summary, "samples": sm.output.samples},
         sm.params.cfg, sm.log[0], sm.threads)
elif __name__ == "__main__":  # by hand: explicit paths; the settings from a config file's refiner.evaluation
    import argparse

    import yaml

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--refiner", required=True), p.add_argument("--tokenizer", required=True)
    p.add_argument("--frames", nargs="+", required=True, help="frame stores of the test videos (VIDEO.zarr)")
    p.add_argument("--latents", nargs="+", required=True, help="their latent stores, or the shard folders that hold them")
    p.add_argument("--config", help="a config file whose refiner.evaluation is used (none: the defaults)")
    p.add_argument("--out", required=True), p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    cfg = ((yaml.safe_load(Path(a.config).read_text()) or {}).get("refiner") or {}).get("evaluation", {}) if a.config else {}
    o = Path(a.out)
    main({"refiner": a.refiner, "tokenizer": a.tokenizer, "frames": a.frames, "latents": a.latents},
         {"metrics": o / "metrics.csv", "summary": o / "summary.json", "samples": o / "samples"}, cfg, None, a.threads)
