"""Rule train_tokenizer: frames of the train videos -> tokenizer.pt, metrics, curve, reconstructions.

Resumes from params.resume after a kill (same config and inputs only) and deletes it on success.
Fails with one line, writing no output, when the tokenizer collapsed on the val frames.
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from latentwm import checkpoint
from latentwm.distributed import processes, relaunch
from latentwm.errors import one_line_errors
from latentwm.logs import logger, set_threads
from latentwm.tokenizer import fit, to_uint8


def save_reconstructions(path, frames, recon, n: int = 8) -> None:
    """Originals (row 1) above their reconstructions (row 2): uint8 (N, 3, H, W) and float."""
    n = min(n, len(frames))
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.6), squeeze=False)
    for i in range(n):
        for row, img in enumerate((frames[i], to_uint8(recon[i]))):
            ax = axes[row, i]
            ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
        axes[0, 0].set_ylabel("original")
        axes[1, 0].set_ylabel("reconstruction")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(sm) -> None:
    log = logger(sm.log[0])
    set_threads(sm.threads)
    result = fit(
        sm.input.train,
        sm.input.val,
        sm.params.cfg,
        resume_path=sm.params.resume,
        curve_path=sm.output.curve,
        log=log,
    )
    if result is None:  # a data-parallel rank other than 0
        return
    state, metrics, val, recon = result
    checkpoint.save(sm.output.ckpt, state)
    Path(sm.output.metrics).write_text(json.dumps(metrics, indent=2) + "\n")
    save_reconstructions(sm.output.recon, val, recon)
    Path(sm.params.resume).unlink(missing_ok=True)
    log(f"[tokenizer] wrote {sm.output.ckpt}")


with one_line_errors(snakemake.log[0]):
    # more than one GPU given: this script again under torchrun, one rank per GPU
    if not relaunch(__file__, processes(snakemake.resources.get("gpu", 0))):
        main(snakemake)
