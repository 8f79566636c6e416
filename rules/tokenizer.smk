# Frames of the train videos -> results/tokenizer/tokenizer.pt, the frozen frame autoencoder.


rule train_tokenizer:
    input:
        train=train_frames,
        val=val_frames,
        splits="results/splits.json",
    output:
        checkpoint="results/tokenizer/tokenizer.pt",
        metrics="results/tokenizer/metrics.json",
        curve="results/tokenizer/train_curve.csv",
        recon=report(
            "results/tokenizer/reconstructions.png",
            caption="../report/tokenizer_reconstructions.rst",
            category="Tokenizer",
        ),
    log:
        "logs/train_tokenizer.log",
    conda:
        "../envs/latentwm.yaml"
    threads: 8
    resources:
        runtime=720,
        mem_mb=32000,
        gpu=1,
    params:
        cfg=config["tokenizer"],
        resume="results/tokenizer/resume.pt",
    script:
        "../workflow_scripts/train_tokenizer.py"
