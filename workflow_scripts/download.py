"""download: one video spec -> results/videos/{video}.mp4 (rendered, linked or downloaded) and
results/videos/{video}.actions.json (its own per-frame actions, or null)."""

from latentwm.data.download import fetch, spec_from_resolved
from latentwm.data.sources import VideoSpec
from latentwm.pipeline.job import Job


def main(job: Job) -> None:
    spec = job.params.spec  # a VideoSpec's params; a listed URL video's only its id: its URL is in its source's list
    listed = spec["kind"] == "url" and "url" not in spec
    fetch(spec_from_resolved(job.input.resolved, spec["video"]) if listed else VideoSpec(**spec), job.output.video,
          job.params.cfg, job.log, job.output.get("actions"))

if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: python workflow_scripts/download.py URL_OR_FILE OUT.mp4
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("src"), p.add_argument("out")
    a = p.parse_args()
    kind = "url" if a.src.startswith(("http://", "https://")) else "path"
    spec = {"video": "video", "source": "cli", "kind": kind, kind: a.src}
    Job.by_hand(__file__, {}, {"video": a.out}, {"spec": spec, "cfg": {}}).run(main)
