# Training of each method of train.methods (GRPO, P-GRPO, the baselines) with a LoRA adapter,
# launched through accelerate, for each task.


rule train:
    input:
        unpack(train_inputs),
    output:
        adapter=directory(
            f"{OUTPUTS}/{{model}}/{{task}}/{{partition}}/seed{{seed}}/{{method}}/adapter"
        ),
        metrics=f"{OUTPUTS}/{{model}}/{{task}}/{{partition}}/seed{{seed}}/{{method}}/metrics.jsonl",
    log:
        f"{OUTPUTS}/logs/train/{{model}}/{{task}}_{{partition}}_seed{{seed}}_{{method}}.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/train/{{model}}/{{task}}_{{partition}}_seed{{seed}}_{{method}}.tsv"
    conda:
        "../../envs/pgrpo.yaml"
    threads: config["train"]["threads"] * TRAIN_PROCESSES
    resources:
        **TRAIN_GPUS,
        mem_mb=8000,
        runtime=120,
    params:
        config=config_file,
        data=lambda w, input: os.path.dirname(input.data[0]),
        out=lambda w, output: os.path.dirname(output.metrics),
        reward_model=reward_model_flag,
        method=method_flags,
        launch=LAUNCH,
        train=method_section,
        task=lambda w: task_data(w.task),
        lora=config["lora"],
        model=config["model"],
        data_seed=config["seed"],
    message:
        "Training {wildcards.method} on {wildcards.task} ({wildcards.model}, "
        "{wildcards.partition}, seed {wildcards.seed}) for {params.train[steps]} steps"
    shell:
        "{params.launch} -m pgrpo.train --config {params.config} --task {wildcards.task}"
        " {params.method} --model {input.model} --data {params.data}"
        " --clusters {input.clusters} {params.reward_model} --seed {wildcards.seed}"
        " --out {params.out} > {log} 2>&1"
