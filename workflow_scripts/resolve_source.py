"""resolve_source: a URL source -> results/sources/{source}.json = {source, url, videos: [specs]}."""

import json

from latentwm.core.errors import one_line_errors
from latentwm.core.logs import logger
from latentwm.data.download import resolve_url


def main(entry: dict, cfg: dict, out: str, log: str | None) -> None:
    with one_line_errors(log):
        videos = resolve_url(entry, cfg, logger(log))
        with open(out, "w") as f:
            json.dump({"source": entry["id"], "url": entry["url"], "videos": videos}, f, indent=1)


if "snakemake" in globals():
    main(snakemake.params.source, snakemake.params.cfg, snakemake.output[0], snakemake.log[0])
else:  # by hand: python workflow_scripts/resolve_source.py ID URL OUT.json
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("id"), p.add_argument("url"), p.add_argument("out")
    p.add_argument("--playlist-limit", type=int, default=0)
    a = p.parse_args()
    main({"id": a.id, "url": a.url}, {"playlist_limit": a.playlist_limit}, a.out, None)
