# Test accuracy per cluster: the base model and each trained adapter.


rule evaluate:
    input:
        model=MODEL_DIR,
        adapter=f"{OUTPUTS}/movielens/{{method}}/adapter",
        data=expand(f"{MOVIELENS}/{{name}}", name=["items.jsonl", "test.jsonl"]),
        clusters=CLUSTERS,
    output:
        f"{OUTPUTS}/movielens/{{method}}/eval.json",
    log:
        f"{OUTPUTS}/logs/evaluate_{{method}}.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/evaluate_{{method}}.tsv"
    wildcard_constraints:
        method="grpo|pgrpo",
    conda:
        "../../envs/pgrpo.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=CONFIG,
        data=lambda w, input: os.path.dirname(input.data[0]),
        evaluation=config["evaluation"],
        seed=config["seed"],
    message:
        "Evaluating {wildcards.method} on the test split"
    shell:
        "python -m pgrpo.evaluate --config {params.config} --model {input.model}"
        " --adapter {input.adapter} --data {params.data} --clusters {input.clusters}"
        " --out {output} > {log} 2>&1"


rule evaluate_base:
    input:
        model=MODEL_DIR,
        data=expand(f"{MOVIELENS}/{{name}}", name=["items.jsonl", "test.jsonl"]),
        clusters=CLUSTERS,
    output:
        f"{OUTPUTS}/movielens/base/eval.json",
    log:
        f"{OUTPUTS}/logs/evaluate_base.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/evaluate_base.tsv"
    conda:
        "../../envs/pgrpo.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=CONFIG,
        data=lambda w, input: os.path.dirname(input.data[0]),
        evaluation=config["evaluation"],
        seed=config["seed"],
    message:
        "Evaluating the base model on the test split"
    shell:
        "python -m pgrpo.evaluate --config {params.config} --model {input.model}"
        " --data {params.data} --clusters {input.clusters} --out {output} > {log} 2>&1"
