# Declared CSV/JSON outputs -> report() figures under results/plots/ (snakemake --report).


rule plot_training:
    input:
        tokenizer="results/tokenizer/train_curve.csv",
        dynamics="results/dynamics/train_curve.csv",
    output:
        tokenizer=report(
            "results/plots/training/tokenizer_curves.png",
            caption="../report/training_tokenizer.rst",
            category="Tokenizer",
            labels={"figure": "training curves"},
        ),
        dynamics=report(
            "results/plots/training/dynamics_curves.png",
            caption="../report/training_dynamics.rst",
            category="Dynamics",
            labels={"figure": "training curves"},
        ),
        dynamics_per_timestep=report(
            "results/plots/training/dynamics_loss_per_timestep.png",
            caption="../report/training_per_timestep.rst",
            category="Dynamics",
            labels={"figure": "loss per frame position"},
        ),
    log:
        "logs/plot_training.log",
    localrule: True
    conda:
        "../envs/latentwm.yaml"
    threads: 1
    resources:
        runtime=10,
        mem_mb=2000,
    script:
        "../workflow_scripts/plot_training.py"


rule plot_evaluation:
    input:
        summary="results/eval/{evaluation}/summary.json",
        samples="results/eval/{evaluation}/samples",
    output:
        table=report(
            "results/plots/{evaluation}/summary.html",
            caption="../report/eval_table.rst",
            category="Evaluation",
            subcategory="{evaluation}",
            labels={
                "evaluation": "{evaluation}",
                "figure": "0 verdict and summary table",
            },
        ),
        by_step=report(
            directory("results/plots/{evaluation}/by_step"),
            patterns=["{name}.png"],
            caption="../report/eval_by_step.rst",
            category="Evaluation",
            subcategory="{evaluation}",
            labels={
                "evaluation": "{evaluation}",
                "figure": "1 {name} by horizon step",
            },
        ),
        paired=report(
            "results/plots/{evaluation}/paired_differences.png",
            caption="../report/eval_paired.rst",
            category="Evaluation",
            subcategory="{evaluation}",
            labels={
                "evaluation": "{evaluation}",
                "figure": "2 paired differences to the baselines",
            },
        ),
        speed=report(
            "results/plots/{evaluation}/speed_quality.png",
            caption="../report/eval_speed.rst",
            category="Evaluation",
            subcategory="{evaluation}",
            labels={
                "evaluation": "{evaluation}",
                "figure": "3 sampler speed vs quality",
            },
        ),
        samples=report(
            "results/plots/{evaluation}/samples.html",
            caption="../report/eval_samples.rst",
            category="Evaluation",
            subcategory="{evaluation}",
            labels={
                "evaluation": "{evaluation}",
                "figure": "4 sample rollouts (animated)",
            },
        ),
    log:
        "logs/plot_evaluation/{evaluation}.log",
    localrule: True
    conda:
        "../envs/latentwm.yaml"
    threads: 1
    resources:
        runtime=10,
        mem_mb=2000,
    script:
        "../workflow_scripts/plot_evaluation.py"
