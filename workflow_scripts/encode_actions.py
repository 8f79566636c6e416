"""encode_actions: lam.pt + one shard's frame stores -> results/actions/latent/{shard}/{video}.zarr,
int16 (T,) each: the latent action that produced each frame (frame 0: -1), provenance (lam_hash) in attrs."""

from latentwm.core import files
from latentwm.data.store import write_shard
from latentwm.models import checkpoint
from latentwm.pipeline.job import Job
from latentwm.training.encode import encode_actions


def main(job: Job) -> None:
    lam = job.input.lam
    ckpt = checkpoint.load(lam)
    model = checkpoint.build_model(ckpt, kind="lam")
    lam_hash = files.file_hash(lam)
    write_shard(job.output.actions, list(job.input.frames),
                lambda f, store: encode_actions(model, ckpt, f, store, lam_hash, log=job.log))


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: python workflow_scripts/encode_actions.py LAM.pt OUT_FOLDER FRAMES.zarr...
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("lam"), p.add_argument("out", help="the folder for the action stores (one per frame store)")
    p.add_argument("frames", nargs="+")
    a = p.parse_args()
    Job.by_hand(__file__, {"lam": a.lam, "frames": a.frames}, {"actions": a.out}, threads=1).run(main)
