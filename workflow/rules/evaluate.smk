# Test reward per cluster and per true group: the base model ("base") and each trained run
# ("seed0/pgrpo"); a last folder "c8" evaluates MovieLens with 8 test candidates (figure 3).


rule evaluate:
    input:
        unpack(evaluation_inputs),
    output:
        f"{OUTPUTS}/{{model}}/{{task}}/{{partition}}/{{run}}/eval.json",
    log:
        f"{OUTPUTS}/logs/evaluate/{{model}}/{{task}}/{{partition}}/{{run}}.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/evaluate/{{model}}/{{task}}/{{partition}}/{{run}}.tsv"
    wildcard_constraints:
        run=r"(base|seed\d+/(grpo|pgrpo))(/c\d+)?",
    conda:
        "../../envs/pgrpo.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=config_file,
        data=lambda w, input: os.path.dirname(input.data[0]),
        flags=evaluation_flags,
        evaluation=lambda w: section(w.task, "evaluation"),
        task=lambda w: task_data(w.task),
        model=config["model"],
        seed=config["seed"],
    message:
        "Evaluating {wildcards.run} ({wildcards.model}, {wildcards.partition}) on the"
        " {wildcards.task} test split"
    shell:
        "python -m pgrpo.evaluate --config {params.config} --task {wildcards.task}"
        " --model {input.model} --data {params.data} --clusters {input.clusters}"
        " {params.flags} --out {output} > {log} 2>&1"
