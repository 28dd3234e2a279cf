# GRPO and P-GRPO training with a LoRA adapter, launched through accelerate.


rule train:
    input:
        model=MODEL_DIR,
        data=expand(f"{MOVIELENS}/{{name}}", name=["items.jsonl", "train.jsonl"]),
        clusters=CLUSTERS,
    output:
        adapter=directory(f"{OUTPUTS}/movielens/{{method}}/adapter"),
        metrics=f"{OUTPUTS}/movielens/{{method}}/metrics.jsonl",
    log:
        f"{OUTPUTS}/logs/train_{{method}}.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/train_{{method}}.tsv"
    wildcard_constraints:
        method="grpo|pgrpo",
    conda:
        "../../envs/pgrpo.yaml"
    threads: config["train"]["threads"] * config["train"]["num_processes"]
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        config=CONFIG,
        data=lambda w, input: os.path.dirname(input.data[0]),
        out=lambda w, output: os.path.dirname(output.metrics),
        launch=accelerate_launch(),
        train=config["train"],
        lora=config["lora"],
        model=config["model"],
        seed=config["seed"],
    message:
        "Training {wildcards.method} for {params.train[steps]} steps"
    shell:
        "{params.launch} -m pgrpo.train --config {params.config} --method {wildcards.method}"
        " --model {input.model} --data {params.data} --clusters {input.clusters}"
        " --out {params.out} > {log} 2>&1"
