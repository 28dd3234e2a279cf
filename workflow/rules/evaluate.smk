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
        run=rf"(base|seed\d+/({one_of(METHODS)})(-g\d+)?)(/c\d+)?",
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


# Reference rows of a multiple-choice task's table and of figure 3 (MovieLens: model-free
# recommenders, always one letter, newest release, genre overlap, popularity) on the same
# test users.
rule heuristics:
    input:
        data=lambda w: prepared(w.task, *TASK_SPECS[w.task].reference_files),
        test=lambda w: heuristics_test(w.task, int(w.size)),
        clusters=lambda w: clusters_file(w.task, w.partition),
    output:
        f"{OUTPUTS}/{{task}}/{{partition}}/heuristics_c{{size}}.json",
    log:
        f"{OUTPUTS}/logs/heuristics/{{task}}/{{partition}}/c{{size}}.log",
    wildcard_constraints:
        task=REFERENCED,
        size=r"\d+",
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config=config_file,
        data=lambda w, input: os.path.dirname(input.data[0]),
        evaluation=lambda w: section(w.task, "evaluation"),
        seed=config["seed"],
    message:
        "Scoring the {wildcards.task} reference rows ({wildcards.partition},"
        " {wildcards.size} candidates)"
    shell:
        "python -m pgrpo.heuristics --config {params.config} --task {wildcards.task}"
        " --data {params.data} --test {input.test} --clusters {input.clusters}"
        " --out {output} > {log} 2>&1"
