# Keyframe imputation (only with refiner.enabled): latents of the train videos (val: the held-out
# loss) -> results/refiner/refiner.pt; scored on the test videos -> results/refiner/eval/; its page
# -> results/plots/refiner/. train_refiner gets the section without `evaluation`, so an evaluation
# setting reruns only the last two; nothing here reruns the tokenizer or dynamics.
from latentwm.config.refiner import trained_slice


rule train_refiner:
    input:
        latents=lambda w: encoded("latents", "train"),
        val=lambda w: encoded("latents", "val"),
        stats="results/latents/stats.json",
    output:
        checkpoint="results/refiner/refiner.pt",
        curve="results/refiner/train_curve.csv",
        metrics="results/refiner/metrics.json",
    log:
        "logs/train_refiner.log",
    conda:
        "../envs/latentwm.yaml"
    threads: 8
    resources:
        runtime=720,
        mem_mb=16000,
        gpu=1,
    params:
        cfg=trained_slice(config["refiner"]),
        resume="results/refiner/resume.pt",
    script:
        "../workflow_scripts/train_refiner.py"


rule evaluate_refiner:
    input:
        refiner="results/refiner/refiner.pt",
        tokenizer="results/tokenizer/tokenizer.pt",
        latents=lambda w: encoded("latents", "test"),
        frames=lambda w: frames(split_videos("test")),
    output:
        metrics="results/refiner/eval/metrics.csv",
        summary="results/refiner/eval/summary.json",
        samples=directory("results/refiner/eval/samples"),
    log:
        "logs/evaluate_refiner.log",
    conda:
        "../envs/latentwm.yaml"
    threads: 4
    resources:
        runtime=120,
        mem_mb=16000,
    params:
        cfg=config["refiner"]["evaluation"],
    script:
        "../workflow_scripts/evaluate_refiner.py"


rule plot_refiner:
    input:
        summary="results/refiner/eval/summary.json",
        samples="results/refiner/eval/samples",
    output:
        page=report(
            "results/plots/refiner/summary.html",
            caption="../report/refiner.rst",
            category="Refiner",
            labels={"figure": "0 verdict, tables and filmstrips"},
        ),
        figure=report(
            "results/plots/refiner/by_position.png",
            caption="../report/refiner.rst",
            category="Refiner",
            labels={"figure": "1 PSNR and sharpness by position"},
        ),
    log:
        "logs/plot_refiner.log",
    localrule: True
    conda:
        "../envs/latentwm.yaml"
    threads: 1
    resources:
        runtime=10,
        mem_mb=2000,
    script:
        "../workflow_scripts/plot_refiner.py"
