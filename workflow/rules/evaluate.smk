# Test reward per cluster and per true group: the base model ("base") and each adapter.


rule evaluate:
    input:
        unpack(evaluation_inputs),
    output:
        f"{OUTPUTS}/{{task}}/{{method}}/eval.json",
    log:
        f"{OUTPUTS}/logs/evaluate_{{task}}_{{method}}.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/evaluate_{{task}}_{{method}}.tsv"
    conda:
        "../../envs/pgrpo.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=CONFIG,
        data=lambda w, input: os.path.dirname(input.data[0]),
        adapter=lambda w, input: f"--adapter {input.adapter}" if w.method != "base" else "",
        reward_model=reward_model_flag,
        evaluation=lambda w: section(w.task, "evaluation"),
        task=lambda w: task_data(w.task),
        model=config["model"],
        seed=config["seed"],
    message:
        "Evaluating {wildcards.method} on the {wildcards.task} test split"
    shell:
        "python -m pgrpo.evaluate --config {params.config} --task {wildcards.task}"
        " --model {input.model} {params.adapter} --data {params.data}"
        " --clusters {input.clusters} {params.reward_model} --out {output} > {log} 2>&1"
