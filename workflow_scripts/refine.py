"""Fill the frames between keyframes with a trained refiner (refiner.enabled: results/refiner/refiner.pt).

    python workflow_scripts/refine.py --video clip.mp4 --spacing 8 --out filled.gif [--start 30 --keys 5]
    python workflow_scripts/refine.py --images storyboard/ --spacing 8 --out filled.mp4
    python workflow_scripts/refine.py --rollout-every 4 --horizon 8 --out rollout_fill.json

--video: its frames at the pipeline's frame rate (--fps, default the run's frames.fps: a ceiling, as
in extraction, so a slower video keeps its own rate), resized like the pipeline's frames; every
--spacing-th frame from --start is a keyframe (--keys of them, default as many as fit); the filled
frames are written, and scored against the video's own (beside linear interpolation of the
latents). --images: each image (name order) is a keyframe, --spacing frames apart. --rollout-every
K: the dynamics model's rollout from real contexts of the test videos, kept at every K-th frame and
filled between by the refiner, scored against the plain rollout per step (a JSON at --out).
--one-level fills at the keyframes' level only; by default down the levels,
--steps flow steps each (default: the evaluation's).
"""

import argparse
import json
from pathlib import Path

from latentwm.config.data import FramesConfig
from latentwm.config.fields import from_dict, to_dict
from latentwm.config.refiner import RefinerEval
from latentwm.core.errors import PipelineError
from latentwm.data.store import open_store, stores_in
from latentwm.evaluation.impute import fill_file, rollout_then_fill
from latentwm.pipeline.job import Job


def main(job: Job) -> None:
    a, r = job.params, Path(job.params.results)
    refiner, tokenizer = a.refiner or r / "refiner/refiner.pt", a.tokenizer or r / "tokenizer/tokenizer.pt"
    if not Path(refiner).is_file():
        raise PipelineError(f"{refiner} does not exist; set refiner.enabled: true and run snakemake (or --refiner PATH)")
    if a.fps is not None:  # the bounds of frames.fps
        try:
            from_dict(FramesConfig, {"fps": a.fps})
        except PipelineError as e:
            raise PipelineError(f"--fps {a.fps}: {e}; give a rate frames.fps allows") from None
    if a.rollout_every:
        test = json.loads((r / "splits.json").read_text())["test"]
        rollout_then_fill(a.dynamics or r / "dynamics/dynamics.pt", tokenizer, refiner,
                          stores_in(sorted((r / "latents").glob("test_*")), test),
                          [r / "frames" / f"{v}.zarr" for v in test], a.rollout_every, a.horizon, a.context,
                          a.windows, not a.one_step, a.steps, a.out, job.log)
        return
    stores = sorted((r / "frames").glob("*.zarr"))
    # the run's frames settings (frames.fps is a ceiling: the rate a video is read at follows it as in extraction)
    frames = open_store(stores[0], scan=False).attrs["settings"] if stores else to_dict(FramesConfig())
    fill_file(refiner, tokenizer, a.out, a.spacing, not a.one_step, a.steps, a.fps or frames["fps"], a.video, a.images,
              a.start, a.keys, job.log, frames["resize"])

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results", help="the pipeline's results folder (checkpoints, test stores)")
    p.add_argument("--refiner"), p.add_argument("--tokenizer"), p.add_argument("--dynamics")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="a video file: keyframes every --spacing frames")
    src.add_argument("--images", help="a folder of keyframe images, in name order")
    src.add_argument("--rollout-every", type=int, help="keep every K-th frame of the dynamics model's rollout, fill the rest")
    p.add_argument("--spacing", type=int, default=8, help="frames from one keyframe to the next (a spacing of the refiner's)")
    p.add_argument("--start", type=int, default=0, help="--video: the first keyframe's frame")
    p.add_argument("--keys", type=int, help="--video: how many keyframes (default: as many as fit)")
    p.add_argument("--fps", type=float, help="--video: the highest rate to read it at (a slower video keeps its own), and the "
                   "output's (default: the run's frames.fps)")
    p.add_argument("--horizon", type=int, default=8), p.add_argument("--context", type=int, default=8)
    p.add_argument("--windows", type=int, default=16, help="--rollout-every: at most this many windows per test video")
    p.add_argument("--one-level", dest="one_step", action="store_true",
                   help="fill at the keyframes' level at once, not down the levels")
    p.add_argument("--steps", type=int, default=RefinerEval().steps, help="Euler steps of the flow per level")
    p.add_argument("--out", required=True, help="a .gif or .mp4 (--video, --images), a .json (--rollout-every)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    Job.by_hand(__file__, {}, {}, vars(a), a.threads).run(main)
