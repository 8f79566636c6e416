"""Fill the frames between keyframes with a trained refiner (refiner.enabled: results/refiner/refiner.pt).

    python workflow_scripts/refine.py --video clip.mp4 --spacing 8 --out filled.gif [--start 30 --keys 5]
    python workflow_scripts/refine.py --images storyboard/ --spacing 8 --out filled.mp4
    python workflow_scripts/refine.py --rollout-every 4 --horizon 8 --out rollout_fill.json

--video: its frames at the pipeline's frame rate (--fps, default the frame stores'), resized like
the pipeline's frames; every --spacing-th frame from --start is a keyframe (--keys of them, default
as many as fit); the filled frames are written, and scored against the video's own (beside linear
interpolation of the latents). --images: each image (name order) is a keyframe, --spacing frames
apart. --rollout-every K: the dynamics model's rollout from real contexts of the test videos, kept
at every K-th frame and filled between by the refiner, scored against the plain rollout per step
(a JSON at --out). --one-step fills at the keyframes' level at once; by default down the levels.
"""

import argparse
import json
from pathlib import Path

from latentwm.core.errors import PipelineError, one_line_errors
from latentwm.core.logs import logger, set_threads
from latentwm.data.store import open_store, stores_in
from latentwm.evaluation.impute import (
    frame_size,
    image_frames,
    impute,
    rollout_then_fill,
    scored,
    video_frames,
    write_video,
)
from latentwm.evaluation.refiner import load

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--results", default="results", help="the pipeline's results folder (checkpoints, test stores)")
p.add_argument("--refiner"), p.add_argument("--tokenizer"), p.add_argument("--dynamics")
src = p.add_mutually_exclusive_group(required=True)
src.add_argument("--video", help="a video file: keyframes every --spacing frames")
src.add_argument("--images", help="a folder of keyframe images, in name order")
src.add_argument("--rollout-every", type=int, help="keep every K-th frame of the dynamics model's rollout, fill the rest")
p.add_argument("--spacing", type=int, default=8, help="frames from one keyframe to the next (one of the refiner's spacings)")
p.add_argument("--start", type=int, default=0, help="--video: the first keyframe's frame")
p.add_argument("--keys", type=int, help="--video: how many keyframes (default: as many as fit)")
p.add_argument("--fps", type=float, help="--video: frame rate to read it at, and of the output (default: the pipeline's)")
p.add_argument("--horizon", type=int, default=8), p.add_argument("--context", type=int, default=8)
p.add_argument("--windows", type=int, default=16, help="--rollout-every: at most this many windows per test video")
p.add_argument("--one-step", action="store_true", help="fill at the keyframes' level at once, not down the levels")
p.add_argument("--out", required=True, help="a .gif or .mp4 (--video, --images), a .json (--rollout-every)")
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
log = logger(None)
r = Path(a.results)
with one_line_errors(None):
    set_threads(a.threads)
    refiner_path, tokenizer_path = a.refiner or r / "refiner/refiner.pt", a.tokenizer or r / "tokenizer/tokenizer.pt"
    if not Path(refiner_path).is_file():
        raise PipelineError(f"{refiner_path} does not exist; set refiner.enabled: true and run snakemake (or --refiner PATH)")
    test = json.loads((r / "splits.json").read_text())["test"] if (r / "splits.json").is_file() else []
    if a.rollout_every:
        frames = [str(r / "frames" / f"{v}.zarr") for v in test]
        rollout_then_fill(a.dynamics or r / "dynamics/dynamics.pt", tokenizer_path, refiner_path,
                          stores_in(sorted((r / "latents").glob("test_*")), test), frames, a.rollout_every, a.horizon,
                          a.context, a.windows, not a.one_step, a.out, log)
    else:
        model, ckpt, codec = load(refiner_path, tokenizer_path, "cpu")
        h, w = frame_size(codec, ckpt["stats"])
        fps = a.fps or (open_store(frames[0], scan=False).attrs["fps"] if (frames := sorted((r / "frames").glob("*.zarr")))
                        else 15.0)
        if a.video:
            video = video_frames(a.video, fps, h, w)
            n = (len(video) - 1 - a.start) // a.spacing + 1 if a.keys is None else a.keys
            truth = video[a.start : a.start + (n - 1) * a.spacing + 1]
            if n < 2 or len(truth) < (n - 1) * a.spacing + 1:
                raise PipelineError(f"--video {a.video} has {len(video)} frames at {fps} fps: {n} keyframes every {a.spacing} "
                                    f"from {a.start} do not fit; lower --start, --keys or --spacing")
            keys = truth[:: a.spacing]
        else:
            keys, truth = image_frames(a.images, h, w), None
        filled = impute(model, codec, keys, a.spacing, not a.one_step, float(ckpt.get("noise", 0.0)))
        write_video(filled["refiner"], a.out, fps)
        log(f"[refine] wrote {a.out}: {len(filled['refiner'])} frames from {len(keys)} keyframes every {a.spacing}")
        if truth is not None:
            for name, m in scored(filled, truth, a.spacing).items():
                log(f"[refine] {name}: in-between frames {m['psnr']:.2f} dB, sharpness {m['sharpness']:.2f} of the video's")
