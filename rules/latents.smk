# Frames -> results/latents/{shard}/{video}.zarr float16 (T, C, h, w) with the tokenizer, one job
# per shard (latents.videos_per_job videos of one split: train_000, ...); train-video stats.


rule encode_latents:
    input:
        tokenizer="results/tokenizer/tokenizer.pt",
        frames=shard_frames,
    output:
        latents=directory("results/latents/{shard}"),
    log:
        "logs/encode_latents/{shard}.log",
    conda:
        "../envs/latentwm.yaml"
    threads: 1
    resources:
        runtime=60,
        mem_mb=16000,
    params:
        cfg=config["latents"],
    script:
        "../workflow_scripts/encode_latents.py"


rule latent_stats:
    input:
        tokenizer="results/tokenizer/tokenizer.pt",
        latents=lambda w: encoded("latents", "train"),
    output:
        stats="results/latents/stats.json",
    log:
        "logs/latent_stats.log",
    conda:
        "../envs/latentwm.yaml"
    threads: 1
    resources:
        runtime=10,
        mem_mb=4000,
    script:
        "../workflow_scripts/latent_stats.py"
