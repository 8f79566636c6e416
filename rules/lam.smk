# Latent action model (only with dynamics.actions: latent): frames of the train videos ->
# results/lam/lam.pt; then every video's frames -> results/actions/latent/{shard}/{video}.zarr (the
# shards of encode_latents).


rule train_lam:
    input:
        frames=train_frames,
        val=val_frames,
    output:
        checkpoint="results/lam/lam.pt",
        curve="results/lam/train_curve.csv",
        metrics="results/lam/metrics.json",
    log:
        "logs/train_lam.log",
    conda:
        "../envs/latentwm.yaml"
    threads: 8
    resources:
        runtime=720,
        mem_mb=32000,
        gpu=1,
    params:
        cfg=config["lam"],
        resume="results/lam/resume.pt",
    script:
        "../workflow_scripts/train_lam.py"


rule encode_actions:
    input:
        lam="results/lam/lam.pt",
        frames=shard_frames,
    output:
        actions=directory("results/actions/latent/{shard}"),
    log:
        "logs/encode_actions/{shard}.log",
    conda:
        "../envs/latentwm.yaml"
    threads: 1
    resources:
        runtime=60,
        mem_mb=16000,
    script:
        "../workflow_scripts/encode_actions.py"
