# Encoded video -> results/frames/{video}.zarr, uint8 (T, 3, H, W); its own actions on those
# frames -> results/actions/given/{video}.zarr, int16 (T,); and the split file.


rule extract_frames:
    input:
        video=video_file("mp4"),
    output:
        frames=directory("results/frames/{video}.zarr"),
    log:
        "logs/extract_frames/{video}.log",
    conda:
        "../envs/latentwm.yaml"
    threads: 1
    resources:
        runtime=30,
        mem_mb=4000,
        cpus_per_task=2,
    params:
        cfg=config["frames"],
        source=lambda w: video_source(w.video),
    script:
        "../workflow_scripts/extract_frames.py"


rule splits:
    input:
        resolved=[f"results/sources/{sid}.json" for sid in URL_SOURCES],
    output:
        splits="results/splits.json",
    log:
        "logs/splits.log",
    localrule: True
    conda:
        "../envs/latentwm.yaml"
    threads: 1
    resources:
        runtime=5,
        mem_mb=1000,
    params:
        sources=config["sources"],
        cfg=config["splits"],
    script:
        "../workflow_scripts/splits.py"


rule given_actions:
    input:
        record=video_file("actions.json"),
        frames="results/frames/{video}.zarr",
    output:
        actions=directory("results/actions/given/{video}.zarr"),
    log:
        "logs/given_actions/{video}.log",
    localrule: True
    conda:
        "../envs/latentwm.yaml"
    threads: 1
    resources:
        runtime=10,
        mem_mb=1000,
    script:
        "../workflow_scripts/given_actions.py"
