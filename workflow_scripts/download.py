"""download: one video spec -> results/videos/{video}.mp4 (rendered, linked or downloaded) and
results/videos/{video}.actions.json (its own per-frame actions, or null)."""

from latentwm.core.errors import one_line_errors
from latentwm.core.logs import logger
from latentwm.data.download import fetch, spec_from_resolved


def main(spec: dict, resolved: str | None, cfg: dict, out: str, log: str | None, actions: str | None = None) -> None:
    with one_line_errors(log):
        if spec["kind"] == "url":  # the URL of this entry comes from its source's resolved list
            spec = spec_from_resolved(resolved, spec["video"])
        fetch(spec, out, cfg, logger(log), actions)


if "snakemake" in globals():
    resolved = snakemake.input.get("resolved")
    main(snakemake.params.spec, resolved, snakemake.params.cfg, snakemake.output.video, snakemake.log[0],
         snakemake.output.actions)
else:  # by hand: python workflow_scripts/download.py URL_OR_FILE OUT.mp4
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("src"), p.add_argument("out")
    a = p.parse_args()
    kind = "url" if a.src.startswith(("http://", "https://")) else "path"
    spec = {"video": "video", "source": "cli", "kind": kind, kind: a.src}
    with one_line_errors():
        fetch(spec, a.out, {}, logger())
