"""given_actions: results/videos/{video}.actions.json + the frame store -> results/actions/given/{video}.zarr,
int16 (T,) aligned with the frames (all -1, attr given false, for a video without actions)."""

from latentwm.core.errors import one_line_errors
from latentwm.core.logs import logger
from latentwm.data.actions import write_given


def main(record: str, frames: str, out: str, log: str | None) -> None:
    with one_line_errors(log):
        write_given(record, frames, out, logger(log))


if "snakemake" in globals():
    main(snakemake.input.record, snakemake.input.frames, snakemake.output[0], snakemake.log[0])  # noqa: F821
else:  # by hand: python workflow_scripts/given_actions.py VIDEO.actions.json FRAMES.zarr OUT.zarr
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("record"), p.add_argument("frames"), p.add_argument("out")
    a = p.parse_args()
    main(a.record, a.frames, a.out, None)
