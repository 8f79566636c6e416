"""latent_stats: per-channel mean/std of the train videos' latents -> results/latents/stats.json."""

import json
from pathlib import Path

from latentwm.core import files
from latentwm.data.store import stores_in
from latentwm.pipeline.job import Job
from latentwm.training.encode import latent_stats


def main(job: Job) -> None:
    stats = latent_stats(stores_in(list(job.input.latents)), files.file_hash(job.input.tokenizer), log=job.log)
    Path(job.output.stats).write_text(json.dumps(stats, indent=2) + "\n")
    job.log(f"[stats] mean {[round(v, 3) for v in stats['mean']]} std {[round(v, 3) for v in stats['std']]}")


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: python workflow_scripts/latent_stats.py TOKENIZER.pt OUT.json LATENTS...
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("tokenizer"), p.add_argument("out")
    p.add_argument("latents", nargs="+", help="latent stores of the train videos, or the shard folders that hold them")
    a = p.parse_args()
    Job.by_hand(__file__, {"tokenizer": a.tokenizer, "latents": a.latents}, {"stats": a.out}).run(main)
