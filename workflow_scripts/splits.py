"""splits: the configured videos -> results/splits.json {train, val, test, seed}, fixed by seed.

The video list is built by the same function as rules/common.smk's, so the DAG and this file agree.
"""

import json

from latentwm.core.errors import one_line_errors
from latentwm.data.sources import all_video_specs, resolved_lists
from latentwm.data.splits import assign_splits


def main(resolved: list[str], sources: list[dict], cfg: dict, out: str, log: str | None) -> None:
    with one_line_errors(log):
        videos = sorted(all_video_specs(sources, resolved_lists(resolved)))
        split = assign_splits(videos, cfg["val"], cfg["test"], cfg["seed"])
        with open(out, "w") as f:
            json.dump(
                {**split, "seed": cfg["seed"], "val_fraction": cfg["val"], "test_fraction": cfg["test"]}, f, indent=1
            )


if "snakemake" in globals():
    main(list(snakemake.input), snakemake.params.sources, snakemake.params.cfg, snakemake.output[0], snakemake.log[0])
else:  # by hand: python workflow_scripts/splits.py CONFIG.yaml OUT.json [RESOLVED.json ...]
    import argparse

    import yaml

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config"), p.add_argument("out"), p.add_argument("resolved", nargs="*")
    a = p.parse_args()
    with open(a.config) as f:
        c = yaml.safe_load(f)
    main(a.resolved, c["sources"], c["splits"], a.out, None)
