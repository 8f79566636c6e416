"""splits: the configured videos -> results/splits.json {train, val, test, seed}, fixed by seed.

The video list is built by the same function as rules/common.smk's, so the DAG and this file agree.
"""

import json

from latentwm.config.data import SplitsConfig
from latentwm.config.fields import from_dict
from latentwm.data.sources import all_video_specs, pinned_splits, resolved_lists
from latentwm.data.splits import assign_splits
from latentwm.pipeline.job import Job, section


def main(job: Job) -> None:
    cfg = from_dict(SplitsConfig, job.params.cfg, "splits")  # by hand: the keys the file leaves out take defaults
    specs = all_video_specs(job.params.sources, resolved_lists(list(job.input.resolved)))
    split = assign_splits(sorted(specs), cfg.val, cfg.test, cfg.seed, pinned_splits(job.params.sources, specs))
    with open(job.output.splits, "w") as f:
        json.dump({**split, "seed": cfg.seed, "val_fraction": cfg.val, "test_fraction": cfg.test}, f, indent=1)


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: python workflow_scripts/splits.py CONFIG.yaml OUT.json [RESOLVED.json ...]
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config"), p.add_argument("out"), p.add_argument("resolved", nargs="*")
    a = p.parse_args()
    Job.by_hand(__file__, {"resolved": a.resolved}, {"splits": a.out},
                {"sources": section(a.config, "sources"), "cfg": section(a.config, "splits")}).run(main)
