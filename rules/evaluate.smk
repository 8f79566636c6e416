# Dynamics + tokenizer + held-out test videos -> results/eval/{evaluation}/: rollout metrics
# against the baselines (copy_last, teacher_forced, tokenizer ceiling) and sample videos.
# params is only this evaluation's slice of config: changing it reruns evaluation and plots only.


rule evaluate_rollouts:
    input:
        unpack(action_inputs("test")),
        unpack(truth_actions),
        dynamics="results/dynamics/dynamics.pt",
        tokenizer="results/tokenizer/tokenizer.pt",
        stats="results/latents/stats.json",
        latents=lambda w: encoded("latents", "test"),
        frames=lambda w: frames(split_videos("test")),
    output:
        metrics="results/eval/{evaluation}/metrics.csv",
        summary="results/eval/{evaluation}/summary.json",
        samples=report(
            directory("results/eval/{evaluation}/samples"),
            patterns=["{name}.png"],
            caption="../report/eval_filmstrip.rst",
            category="Evaluation",
            subcategory="{evaluation}",
            labels={"evaluation": "{evaluation}", "figure": "filmstrip {name}"},
        ),
    log:
        "logs/evaluate_rollouts/{evaluation}.log",
    conda:
        "../envs/latentwm.yaml"
    threads: 4
    resources:
        runtime=240,
        mem_mb=32000,
        gpu=1,
    params:
        cfg=lambda w: config["evaluations"][w.evaluation],
    script:
        "../workflow_scripts/evaluate_rollouts.py"
