# General capabilities kept (table 4): held-out language-modelling loss on general text and a
# multiple-choice set, for the base model ("base") and every trained adapter.


rule general_capabilities:
    input:
        unpack(general_inputs),
    output:
        f"{OUTPUTS}/{{model}}/{{where}}/general.json",
    log:
        f"{OUTPUTS}/logs/general/{{model}}/{{where}}.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/general/{{model}}/{{where}}.tsv"
    wildcard_constraints:
        where=rf"base|({one_of(TASK_SPECS)})/[^/]+/seed\d+/({one_of(METHODS)})",
    conda:
        "../../envs/pgrpo.yaml"
    threads: config["train"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=config_file,
        adapter=lambda w, input: f"--adapter {input.adapter}" if w.where != "base" else "",
        general=config["general"],
        model=config["model"],
        seed=config["seed"],
    message:
        "General capabilities of {wildcards.model} {wildcards.where}"
    shell:
        "python -m pgrpo.general --config {params.config} --model {input.model}"
        " {params.adapter} --out {output} --no-progress > {log} 2>&1"
