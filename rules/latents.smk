# Frames -> results/latents/{video}.zarr float16 (T, C, h, w) with the tokenizer; train-video stats.


rule encode_latents:
    input:
        tokenizer="results/tokenizer/tokenizer.pt",
        frames="results/frames/{video}.zarr",
    output:
        directory("results/latents/{video}.zarr"),
    log:
        "logs/encode_latents/{video}.log",
    conda:
        "../envs/torch.yaml"
    params:
        cfg=config["latents"],
    script:
        "../workflow_scripts/encode_latents.py"


rule latent_stats:
    input:
        tokenizer="results/tokenizer/tokenizer.pt",
        latents=train_latents,
    output:
        "results/latents/stats.json",
    log:
        "logs/latent_stats.log",
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/latent_stats.py"
