"""encode_latents: one shard's frame stores -> results/latents/{shard}/{video}.zarr with the tokenizer."""

from pathlib import Path

from latentwm.config.data import LatentsConfig
from latentwm.config.fields import from_dict
from latentwm.core import files
from latentwm.core.device import pick_device
from latentwm.core.errors import one_line_errors
from latentwm.core.logs import logger, set_threads
from latentwm.data.store import write_shard
from latentwm.models import checkpoint
from latentwm.training.encode import encode_latents


def main(tokenizer: str, frames: list[str], out: str, cfg: dict, log_path: str | None, threads: int = 1) -> None:
    log = logger(log_path)
    with one_line_errors(log_path):
        set_threads(threads)
        c = from_dict(LatentsConfig, cfg, "latents")
        model = checkpoint.build_model(tokenizer, pick_device(c.device), kind="tokenizer")
        tokenizer_hash = files.file_hash(tokenizer)

        def encode(frames_path: str, store: Path) -> None:
            n = encode_latents(model, frames_path, store, tokenizer_hash=tokenizer_hash, batch_size=c.batch_size,
                               chunk_frames=c.chunk_frames, log=log)
            log(f"[encode] {store.name}: {n} frames")

        write_shard(out, frames, encode)
        log(f"[encode] wrote {out}: {len(frames)} videos")


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input.tokenizer, list(sm.input.frames), sm.output[0], sm.params.cfg, sm.log[0], sm.threads)
else:  # by hand: python workflow_scripts/encode_latents.py TOKENIZER.pt OUT_FOLDER FRAMES.zarr...
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("tokenizer"), p.add_argument("out", help="the folder for the latent stores (one per frame store)")
    p.add_argument("frames", nargs="+")
    a = p.parse_args()
    main(a.tokenizer, a.frames, a.out, {}, None)
