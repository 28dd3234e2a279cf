# The pairwise judge: P-GRPO's test answers against GRPO's, per preference group (figure 5).


rule judge_winrates:
    input:
        unpack(judge_inputs),
    output:
        f"{OUTPUTS}/{{task}}/judge_winrates.json",
    log:
        f"{OUTPUTS}/logs/judge_winrates_{{task}}.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/judge_winrates_{{task}}.tsv"
    wildcard_constraints:
        task="personas|reviews",
    conda:
        "../../envs/pgrpo.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        config=CONFIG,
        data=lambda w, input: os.path.dirname(input.data[0]),
        reward_model=reward_model_flag,
        judge=config["judge"],
        seed=config["seed"],
    message:
        "Judging P-GRPO against GRPO on the {wildcards.task} test prompts"
    shell:
        "python -m pgrpo.winrates --config {params.config} --task {wildcards.task}"
        " --data {params.data} --first pgrpo={input.first} --second grpo={input.second}"
        " --model {input.model} {params.reward_model} --out {output} > {log} 2>&1"


rule figure_winrates:
    input:
        expand(f"{OUTPUTS}/{{task}}/judge_winrates.json", task=JUDGED_TASKS),
    output:
        figure=report(
            f"{RESULTS}/figures/fig5_judge_winrates.png",
            caption="../report/fig5_judge_winrates.rst",
            category="Judge",
        ),
        svg=f"{RESULTS}/figures/fig5_judge_winrates.svg",
        csv=f"{RESULTS}/tables/judge_winrates.csv",
        md=f"{RESULTS}/tables/judge_winrates.md",
    log:
        f"{OUTPUTS}/logs/figure_winrates.log",
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        winrates=lambda w, input: [f"{t}={p}" for t, p in zip(JUDGED_TASKS, input)],
        figure=lambda w, output: os.path.splitext(output.figure)[0],
        table=lambda w, output: os.path.splitext(output.csv)[0],
    message:
        "Writing figure 5: the judge's win rates per group"
    shell:
        "python -m pgrpo.figure_winrates --winrates {params.winrates}"
        " --figure {params.figure} --table {params.table} > {log} 2>&1"
