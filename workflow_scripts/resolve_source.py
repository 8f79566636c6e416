"""resolve_source: a URL source -> results/sources/{source}.json = {source, url, videos: [specs]}."""

import json

from latentwm.data.download import resolve_url
from latentwm.pipeline.job import Job


def main(job: Job) -> None:
    entry = job.params.source
    videos = resolve_url(entry, job.params.cfg, job.log)
    with open(job.output.listing, "w") as f:
        json.dump({"source": entry["id"], "url": entry["url"], "videos": [v.params() for v in videos]}, f, indent=1)


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: python workflow_scripts/resolve_source.py ID URL OUT.json
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("id"), p.add_argument("url"), p.add_argument("out")
    p.add_argument("--playlist-limit", type=int, default=0)
    a = p.parse_args()
    Job.by_hand(__file__, {}, {"listing": a.out},
                {"source": {"id": a.id, "url": a.url}, "cfg": {"playlist_limit": a.playlist_limit}}).run(main)
