"""encode_latents: one shard's frame stores -> results/latents/{shard}/{video}.zarr with the tokenizer."""

from pathlib import Path

from latentwm.config.data import LatentsConfig
from latentwm.config.fields import from_dict
from latentwm.core import files
from latentwm.core.device import pick_device
from latentwm.data.store import write_shard
from latentwm.models import checkpoint
from latentwm.pipeline.job import Job
from latentwm.training.encode import encode_latents


def main(job: Job) -> None:
    c = from_dict(LatentsConfig, job.params.cfg, "latents")
    tokenizer, frames = job.input.tokenizer, list(job.input.frames)
    model = checkpoint.build_model(tokenizer, pick_device(c.device), kind="tokenizer")
    tokenizer_hash = files.file_hash(tokenizer)

    def encode(frames_path: str, store: Path) -> None:
        n = encode_latents(model, frames_path, store, tokenizer_hash=tokenizer_hash, batch_size=c.batch_size,
                           chunk_frames=c.chunk_frames, log=job.log)
        job.log(f"[encode] {store.name}: {n} frames")

    write_shard(job.output.latents, frames, encode)
    job.log(f"[encode] wrote {job.output.latents}: {len(frames)} videos")


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: python workflow_scripts/encode_latents.py TOKENIZER.pt OUT_FOLDER FRAMES.zarr...
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("tokenizer"), p.add_argument("out", help="the folder for the latent stores (one per frame store)")
    p.add_argument("frames", nargs="+")
    a = p.parse_args()
    Job.by_hand(__file__, {"tokenizer": a.tokenizer, "frames": a.frames}, {"latents": a.out}, {"cfg": {}}, threads=1).run(main)
