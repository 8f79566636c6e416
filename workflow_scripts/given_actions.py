"""given_actions: results/videos/{video}.actions.json + the frame store -> results/actions/given/{video}.zarr,
int16 (T,) aligned with the frames (all -1, attr given false, for a video without actions)."""

from latentwm.data.actions import write_given
from latentwm.pipeline.job import Job


def main(job: Job) -> None:
    write_given(job.input.record, job.input.frames, job.output.actions, job.log)


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: python workflow_scripts/given_actions.py VIDEO.actions.json FRAMES.zarr OUT.zarr
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("record"), p.add_argument("frames"), p.add_argument("out")
    a = p.parse_args()
    Job.by_hand(__file__, {"record": a.record, "frames": a.frames}, {"actions": a.out}).run(main)
