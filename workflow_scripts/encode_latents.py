"""Rule encode_latents: one video's frames -> results/latents/{video}.zarr with the tokenizer."""

from latentwm import checkpoint
from latentwm.config import from_dict
from latentwm.errors import one_line_errors
from latentwm.latents import encode_store
from latentwm.settings import LatentsConfig
from latentwm.logs import logger, set_threads
from latentwm.train import pick_device


def main(sm) -> None:
    log = logger(sm.log[0])
    set_threads(sm.threads)
    cfg = from_dict(LatentsConfig, sm.params.cfg, "latents")
    model = checkpoint.build_model(sm.input.tokenizer, pick_device(cfg.device), kind="tokenizer")
    n = encode_store(
        model,
        sm.input.frames,
        sm.output[0],
        tokenizer_hash=checkpoint.file_hash(sm.input.tokenizer),
        batch_size=cfg.batch_size,
        chunk_frames=cfg.chunk_frames,
        log=log,
    )
    log(f"[encode] wrote {sm.output[0]}: {n} frames")


with one_line_errors(snakemake.log[0]):
    main(snakemake)
