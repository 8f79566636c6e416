# Sources -> one encoded video file per file, results/videos/{video}.mp4 (a file cut in parts: one
# for all its part videos), and its own per-frame actions (generator player, sidecar file, or none):
# {video}.actions.json


checkpoint resolve_source:
    output:
        listing="results/sources/{source}.json",
    log:
        "logs/resolve_source/{source}.log",
    localrule: True
    conda:
        "../envs/latentwm.yaml"
    threads: 1
    resources:
        runtime=10,
        mem_mb=1000,
    params:
        source=lambda w: SOURCES[w.source],
        cfg=config["download"],
    script:
        "../workflow_scripts/resolve_source.py"


rule download:
    input:
        unpack(video_source_files),
    output:
        video="results/videos/{video}.mp4",
        actions="results/videos/{video}.actions.json",
    log:
        "logs/download/{video}.log",
    localrule: True
    conda:
        "../envs/latentwm.yaml"
    threads: 1
    resources:
        runtime=60,
        mem_mb=2000,
    params:
        spec=lambda w: file_params(w.video),
        cfg=config["download"],
    script:
        "../workflow_scripts/download.py"


# A local source file that is away (an unmounted drive) or unusable (not a regular file, a brace in
# its path) fails this job, with one line, in place of download: a failed job loses its outputs, a job that never started keeps them, so the link that
# download made earlier survives and the unchanged file's return reruns nothing downstream.
rule source_away:
    output:
        "results/videos/{video}.away",  # never written: the job only reports
    log:
        "logs/source_away/{video}.log",
    localrule: True
    conda:
        "../envs/latentwm.yaml"
    threads: 1
    resources:
        runtime=5,
        mem_mb=1000,
    params:
        spec=lambda w: file_params(w.video),
    script:
        "../workflow_scripts/source_away.py"
