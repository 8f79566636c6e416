"""encode_actions: lam.pt + one shard's frame stores -> results/actions/latent/{shard}/{video}.zarr,
int16 (T,) each: the latent action that produced each frame (frame 0: -1), provenance (lam_hash) in attrs."""

from latentwm.core import files
from latentwm.core.errors import one_line_errors
from latentwm.core.logs import logger, set_threads
from latentwm.data.store import write_shard
from latentwm.models import checkpoint
from latentwm.training.encode import encode_actions


def main(lam: str, frames: list[str], out: str, log_path: str | None, threads: int = 1) -> None:
    log = logger(log_path)
    with one_line_errors(log_path):
        set_threads(threads)
        ckpt = checkpoint.load(lam)
        model = checkpoint.build_model(ckpt, kind="lam")
        lam_hash = files.file_hash(lam)
        write_shard(out, frames, lambda f, store: encode_actions(model, ckpt, f, store, lam_hash, log=log))


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input.lam, list(sm.input.frames), sm.output[0], sm.log[0], sm.threads)
else:  # by hand: python workflow_scripts/encode_actions.py LAM.pt OUT_FOLDER FRAMES.zarr...
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("lam"), p.add_argument("out", help="the folder for the action stores (one per frame store)")
    p.add_argument("frames", nargs="+")
    a = p.parse_args()
    main(a.lam, a.frames, a.out, None)
