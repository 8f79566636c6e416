"""latent_stats: per-channel mean/std of the train videos' latents -> results/latents/stats.json."""

import json
from pathlib import Path

from latentwm.core import files
from latentwm.core.errors import one_line_errors
from latentwm.core.logs import logger
from latentwm.data.store import stores_in
from latentwm.training.encode import latent_stats


def main(tokenizer: str, latents: list[str], out: str, log_path: str | None) -> None:
    log = logger(log_path)
    with one_line_errors(log_path):
        stats = latent_stats(stores_in(latents), files.file_hash(tokenizer), log=log)
        Path(out).write_text(json.dumps(stats, indent=2) + "\n")
        log(f"[stats] mean {[round(v, 3) for v in stats['mean']]} std {[round(v, 3) for v in stats['std']]}")


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input.tokenizer, list(sm.input.latents), sm.output[0], sm.log[0])
else:  # by hand: python workflow_scripts/latent_stats.py TOKENIZER.pt OUT.json LATENTS...
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("tokenizer"), p.add_argument("out")
    p.add_argument("latents", nargs="+", help="latent stores of the train videos, or the shard folders that hold them")
    a = p.parse_args()
    main(a.tokenizer, a.latents, a.out, None)
