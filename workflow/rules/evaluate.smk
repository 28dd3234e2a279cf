# Test accuracy per cluster: the base model ("base") and each trained adapter.


rule evaluate:
    input:
        unpack(evaluation_inputs),
    output:
        f"{OUTPUTS}/movielens/{{method}}/eval.json",
    log:
        f"{OUTPUTS}/logs/evaluate_{{method}}.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/evaluate_{{method}}.tsv"
    wildcard_constraints:
        method="base|grpo|pgrpo",
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
        evaluation=config["evaluation"],
        model=config["model"],
        seed=config["seed"],
    message:
        "Evaluating {wildcards.method} on the test split"
    shell:
        "python -m pgrpo.evaluate --config {params.config} --model {input.model}"
        " {params.adapter} --data {params.data} --clusters {input.clusters}"
        " --out {output} > {log} 2>&1"
