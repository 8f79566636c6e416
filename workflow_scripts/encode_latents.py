"""Rule encode_latents: one shard's frame stores -> results/latents/{shard}/{video}.zarr with the tokenizer."""

from pathlib import Path

from latentwm import checkpoint
from latentwm.config import from_dict
from latentwm.errors import one_line_errors
from latentwm.latents import encode_store
from latentwm.settings import LatentsConfig
from latentwm.logs import logger, set_threads
from latentwm.store import write_shard
from latentwm.train import pick_device


def main(sm) -> None:
    log = logger(sm.log[0])
    set_threads(sm.threads)
    cfg = from_dict(LatentsConfig, sm.params.cfg, "latents")
    model = checkpoint.build_model(sm.input.tokenizer, pick_device(cfg.device), kind="tokenizer")
    tokenizer_hash = checkpoint.file_hash(sm.input.tokenizer)

    def encode(frames: str, store: Path) -> None:
        n = encode_store(model, frames, store, tokenizer_hash=tokenizer_hash, batch_size=cfg.batch_size,
                         chunk_frames=cfg.chunk_frames, log=log)
        log(f"[encode] {store.name}: {n} frames")

    write_shard(sm.output[0], list(sm.input.frames), encode)
    log(f"[encode] wrote {sm.output[0]}: {len(sm.input.frames)} videos")


with one_line_errors(snakemake.log[0]):
    main(snakemake)
