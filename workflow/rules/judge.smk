# The pairwise judge: each method's test answers against the reference method's of the same
# seed (train.reference_method), per preference group (figure 5 averages the seeds).


rule judge_winrates:
    input:
        unpack(judge_inputs),
    output:
        f"{OUTPUTS}/{{model}}/{{task}}/{{partition}}/seed{{seed}}/{{method}}/judge_winrates.json",
    log:
        f"{OUTPUTS}/logs/judge/{{model}}/{{task}}_{{partition}}_seed{{seed}}_{{method}}.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/judge/{{model}}/{{task}}_{{partition}}_seed{{seed}}_{{method}}.tsv"
    wildcard_constraints:
        task=JUDGED,
        method=one_of(COMPARED),
    conda:
        "../../envs/pgrpo.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        config=config_file,
        data=lambda w, input: os.path.dirname(input.data[0]),
        reward_model=reward_model_flag,
        judge=config["judge"],
        seed=config["seed"],
        reference=REFERENCE_METHOD,
    message:
        "Judging {wildcards.method} against {params.reference} (seed {wildcards.seed}) on the "
        "{wildcards.task} test prompts"
    shell:
        "python -m pgrpo.winrates --config {params.config} --task {wildcards.task}"
        " --data {params.data} --first {wildcards.method}={input.first}"
        " --second {params.reference}={input.second}"
        " --model {input.model} {params.reward_model} --agreement {input.agreement}"
        " --out {output} > {log} 2>&1"


# Does the judge agree with the task reward on answers whose rewards differ widely? A judge
# that does not (at chance) judges only judge.pairs_at_chance prompts above.
rule judge_agreement:
    input:
        unpack(agreement_inputs),
    output:
        f"{OUTPUTS}/{{model}}/{{task}}/{{partition}}/judge_agreement.json",
    log:
        f"{OUTPUTS}/logs/judge/{{model}}/{{task}}_{{partition}}_agreement.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/judge/{{model}}/{{task}}_{{partition}}_agreement.tsv"
    wildcard_constraints:
        task=JUDGED,
    conda:
        "../../envs/pgrpo.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=config_file,
        data=lambda w, input: os.path.dirname(input.data[0]),
        reward_model=reward_model_flag,
        judge=config["judge"],
        seed=config["seed"],
    message:
        "Checking the judge against the {wildcards.task} reward"
    shell:
        "python -m pgrpo.agreement --config {params.config} --task {wildcards.task}"
        " --data {params.data} --evaluations {input.evaluations} --model {input.model}"
        " {params.reward_model} --out {output} > {log} 2>&1"
