# Latents of the train videos (val: the held-out loss that picks the weights), with their actions
# when dynamics.actions is latent or given, and the tokenizer that made them -> results/dynamics/dynamics.pt.


rule train_dynamics:
    input:
        unpack(action_inputs("train", "val")),
        latents=lambda w: encoded("latents", "train"),
        val=lambda w: encoded("latents", "val"),
        stats="results/latents/stats.json",
        tokenizer="results/tokenizer/tokenizer.pt",  # the pixel loss decodes with it
    output:
        checkpoint="results/dynamics/dynamics.pt",
        curve="results/dynamics/train_curve.csv",
        health="results/dynamics/health.json",
    log:
        "logs/train_dynamics.log",
    conda:
        "../envs/latentwm.yaml"
    threads: 8
    resources:
        runtime=1440,
        mem_mb=64000,
        gpu=1,
    params:
        cfg=config["dynamics"],
        resume="results/dynamics/resume.pt",
    script:
        "../workflow_scripts/train_dynamics.py"
