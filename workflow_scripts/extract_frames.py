"""extract_frames: results/videos/{video}.mp4 -> results/frames/{video}.zarr, uint8 (T, 3, H, W)."""

from latentwm.config.data import RESIZE, FramesConfig
from latentwm.data.video import extract
from latentwm.pipeline.job import Job


def main(job: Job) -> None:
    src = job.params.source  # the source id, or {"source": id, "part": [k, parts]} of a cut local file
    src = src if isinstance(src, dict) else {"source": src, "part": None}
    extract(job.input.video, job.output.frames, job.params.cfg, src["source"], job.log, part=src["part"])


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: python workflow_scripts/extract_frames.py VIDEO OUT.zarr --fps 30 --size 64
    import argparse

    d = FramesConfig()  # the config's defaults
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("video"), p.add_argument("out")
    p.add_argument("--fps", type=float, default=d.fps), p.add_argument("--size", type=int, default=d.height)
    p.add_argument("--resize", default=d.resize, choices=RESIZE)
    p.add_argument("--min-frames", type=int, default=1)
    p.add_argument("--part", type=int, nargs=2, metavar=("K", "PARTS"), help="only part K (from 0) of PARTS equal parts in time")
    a = p.parse_args()
    cfg = {"fps": a.fps, "height": a.size, "width": a.size, "resize": a.resize, "min_frames": a.min_frames}
    source = {"source": "cli", "part": a.part}
    Job.by_hand(__file__, {"video": a.video}, {"frames": a.out}, {"cfg": cfg, "source": source}).run(main)
