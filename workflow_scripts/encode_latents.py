"""Rule encode_latents: one shard's frame stores -> results/latents/{shard}/{video}.zarr with the tokenizer."""

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


def main(sm) -> None:
    log = logger(sm.log[0])
    set_threads(sm.threads)
    cfg = from_dict(LatentsConfig, sm.params.cfg, "latents")
    model = checkpoint.build_model(sm.input.tokenizer, pick_device(cfg.device), kind="tokenizer")
    tokenizer_hash = files.file_hash(sm.input.tokenizer)

    def encode(frames: str, store: Path) -> None:
        n = encode_latents(model, frames, store, tokenizer_hash=tokenizer_hash, batch_size=cfg.batch_size,
                         chunk_frames=cfg.chunk_frames, log=log)
        log(f"[encode] {store.name}: {n} frames")

    write_shard(sm.output[0], list(sm.input.frames), encode)
    log(f"[encode] wrote {sm.output[0]}: {len(sm.input.frames)} videos")


with one_line_errors(snakemake.log[0]):
    main(snakemake)
