"""source_away: a local source file that is not there, or not usable -> its one ERROR line; writes nothing.

Snakemake runs this job in place of download while the file is away (an unmounted drive, a typo
in sources[].path): download never starts, so the link it made in an earlier run is not removed.
The same for a path that is not a regular file (a FIFO, a device, a symlink loop) or has a brace
in it: the line says which.
"""

from latentwm.core.errors import PipelineError
from latentwm.data.download import local_file
from latentwm.pipeline.job import Job


def main(job: Job) -> None:
    spec = job.params.spec
    local_file(spec["path"], spec["source"])
    # the file came back between planning and this job: download was planned without it
    raise PipelineError(f"source {spec['source']}: file {spec['path']} is there again; rerun")


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
