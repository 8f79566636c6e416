# Latents of the train videos -> results/dynamics/dynamics.pt: the latent dynamics model.


rule train_dynamics:
    input:
        latents=lambda w: latents(split_videos("train")),
        stats="results/latents/stats.json",
    output:
        checkpoint="results/dynamics/dynamics.pt",
        curve="results/dynamics/train_curve.csv",
        health="results/dynamics/health.json",
    log:
        "logs/train_dynamics.log",
    conda:
        "../envs/data.yaml"
    threads: 2
    resources:
        gpu=1,
    params:
        cfg=config["dynamics"],
        resume="results/dynamics/resume.pt",
    script:
        "../workflow_scripts/train_dynamics.py"
