"""extract_frames: results/videos/{video}.mp4 -> results/frames/{video}.zarr, uint8 (T, 3, H, W)."""

from latentwm.config.data import RESIZE
from latentwm.core.errors import one_line_errors
from latentwm.core.logs import logger
from latentwm.data.video import extract


def main(video: str, out: str, cfg: dict, source: str, log: str | None, part: list[int] | None = None) -> None:
    with one_line_errors(log):
        extract(video, out, cfg, source, logger(log), part=part)


if "snakemake" in globals():
    src = snakemake.params.source  # the source id, or {"source": id, "part": [k, parts]} of a cut local file
    src = src if isinstance(src, dict) else {"source": src, "part": None}
    main(snakemake.input[0], snakemake.output[0], snakemake.params.cfg, src["source"], snakemake.log[0], src["part"])
else:  # by hand: python workflow_scripts/extract_frames.py VIDEO OUT.zarr --fps 15 --size 64
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("video"), p.add_argument("out")
    p.add_argument("--fps", type=float, default=15), p.add_argument("--size", type=int, default=64)
    p.add_argument("--resize", default="crop", choices=RESIZE)
    p.add_argument("--min-frames", type=int, default=1)
    p.add_argument("--part", type=int, nargs=2, metavar=("K", "PARTS"), help="only part K (from 0) of PARTS equal parts in time")
    a = p.parse_args()
    cfg = {"fps": a.fps, "height": a.size, "width": a.size, "resize": a.resize, "min_frames": a.min_frames}
    main(a.video, a.out, cfg, "cli", None, a.part)
