"""Rule latent_stats: per-channel mean/std of the train videos' latents -> stats.json."""

import json
from pathlib import Path

from latentwm.core import files
from latentwm.core.errors import one_line_errors
from latentwm.core.logs import logger
from latentwm.data.store import stores_in
from latentwm.training.encode import latent_stats


def main(sm) -> None:
    log = logger(sm.log[0])
    stats = latent_stats(stores_in(sm.input.latents), files.file_hash(sm.input.tokenizer), log=log)
    Path(sm.output[0]).write_text(json.dumps(stats, indent=2) + "\n")
    log(f"[stats] mean {[round(v, 3) for v in stats['mean']]} std {[round(v, 3) for v in stats['std']]}")


with one_line_errors(snakemake.log[0]):
    main(snakemake)
