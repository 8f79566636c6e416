"""encode_actions: lam.pt + one video's frames -> results/actions/latent/{video}.zarr, int16 (T,):
the latent action that produced each frame (frame 0: -1), provenance (lam_hash) in attrs."""

from latentwm import checkpoint
from latentwm.errors import one_line_errors
from latentwm.lam import encode_store
from latentwm.logs import logger, set_threads


def main(lam: str, frames: str, out: str, log_path: str | None, threads: int = 1) -> None:
    log = logger(log_path)
    with one_line_errors(log_path):
        set_threads(threads)
        ckpt = checkpoint.load(lam)
        model = checkpoint.build_model(ckpt, kind="lam")
        encode_store(model, ckpt, frames, out, checkpoint.file_hash(lam), log=log)


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input.lam, sm.input.frames, sm.output[0], sm.log[0], sm.threads)
else:  # by hand: python workflow_scripts/encode_actions.py LAM.pt FRAMES.zarr OUT.zarr
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("lam"), p.add_argument("frames"), p.add_argument("out")
    a = p.parse_args()
    main(a.lam, a.frames, a.out, None)
