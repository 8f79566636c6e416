# latentwm: raw video -> frames (zarr) -> tokenizer -> latents (zarr) -> dynamics -> evaluation.
from snakemake.utils import min_version, validate
from latentwm.pipeline.check import check, check_yaml

min_version("9.0")

# a YAML syntax error with its line number (Snakemake reads a --configfile before this runs)
check_yaml("config.yaml")


configfile: "config.yaml"


# every config problem, one line each, before any job runs (then defaults from the schema)
check(config, workflow.source_path("schemas/config.schema.yaml"))
validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/frames.smk"
include: "rules/tokenizer.smk"
include: "rules/latents.smk"
include: "rules/lam.smk"
include: "rules/dynamics.smk"
include: "rules/evaluate.smk"
include: "rules/refiner.smk"
include: "rules/plots.smk"


# runs only when jobs will run (not in a dry run): every folder they write must be writable
onstart:
    stop_if_unwritable(workflow.dag.needrun_jobs())


rule all:
    default_target: True
    input:
        static_frames,
        *[source_frames(sid) for sid in URL_SOURCES],
        all_targets,
