# Sources -> one encoded video file per video: results/videos/{video}.mp4


checkpoint resolve_source:
    output:
        "results/sources/{source}.json",
    log:
        "logs/resolve_source/{source}.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        source=lambda w: SOURCES[w.source],
        cfg=config["download"],
    script:
        "../workflow_scripts/resolve_source.py"


rule download:
    input:
        unpack(video_source_files),
    output:
        "results/videos/{video}.mp4",
    log:
        "logs/download/{video}.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        spec=lambda w: static_spec(w.video) or {"video": w.video, "kind": "url"},
        cfg=config["download"],
    script:
        "../workflow_scripts/download.py"
