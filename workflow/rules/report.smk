# The catalogue users read: the paper's tables and figures, each cell a mean over seeds with
# a 95% interval, and the manifest of the run that wrote them.


rule table:
    input:
        catalogue_inputs,
    output:
        csv=report(
            f"{RESULTS}/tables/{{table}}.csv",
            caption="../report/catalogue.rst",
            category="Tables",
            labels={"name": "{table}", "format": "csv"},
        ),
        md=f"{RESULTS}/tables/{{table}}.md",
        tex=f"{RESULTS}/tables/{{table}}.tex",
        summary=f"{RESULTS}/metrics/{{table}}.json",
    log:
        f"{OUTPUTS}/logs/table_{{table}}.log",
    wildcard_constraints:
        table=r"table\d+_\w+",
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config=config_file,
        runs=catalogue_args,
        reference=REFERENCE_METHOD,
        stem=lambda w, output: os.path.splitext(output.csv)[0],
    message:
        "Writing {wildcards.table}"
    shell:
        "python -m pgrpo.catalogue --config {params.config} --name {wildcards.table}"
        " --runs {params.runs} --reference-method {params.reference} --out {params.stem}"
        " --summary {output.summary} > {log} 2>&1"


rule figure:
    input:
        catalogue_inputs,
    output:
        png=report(
            f"{RESULTS}/figures/{{figure}}.png",
            caption="../report/catalogue.rst",
            category="Figures",
            labels={"name": "{figure}", "format": "png"},
        ),
        svg=f"{RESULTS}/figures/{{figure}}.svg",
        csv=f"{RESULTS}/tables/{{figure}}.csv",
        md=f"{RESULTS}/tables/{{figure}}.md",
        tex=f"{RESULTS}/tables/{{figure}}.tex",
    log:
        f"{OUTPUTS}/logs/figure_{{figure}}.log",
    wildcard_constraints:
        figure="fig[2-7]_[a-z_]+",
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        runs=catalogue_args,
        reference=REFERENCE_METHOD,
        figure=lambda w, output: os.path.splitext(output.png)[0],
        table=lambda w, output: os.path.splitext(output.csv)[0],
    message:
        "Drawing {wildcards.figure}"
    shell:
        "python -m pgrpo.figures --name {wildcards.figure} --runs {params.runs}"
        " --reference-method {params.reference} --figure {params.figure}"
        " --table {params.table} > {log} 2>&1"


rule reward_curves:
    input:
        lambda w: main_model_runs("fig2_reward_curves"),
    output:
        f"{RESULTS}/metrics/reward_curves.csv",
    log:
        f"{OUTPUTS}/logs/reward_curves.log",
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        runs=lambda w, input: run_args("fig2_reward_curves", input),
    message:
        "Writing the per-step training reward curves (DVC plots)"
    shell:
        "python -m pgrpo.figures --name fig2_reward_curves --runs {params.runs}"
        " --curves {output} > {log} 2>&1"


rule manifest:
    input:
        catalogue_files(),
    output:
        f"{RESULTS}/manifest.json",
    log:
        f"{OUTPUTS}/logs/manifest.log",
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config=config_file,
        started=RUN_STARTED,
        data=data_files(),
        benchmarks=f"{OUTPUTS}/benchmarks",
    message:
        "Writing the manifest of the results"
    shell:
        "python -m pgrpo.manifest --config {params.config} --started {params.started}"
        " --data {params.data} --benchmarks {params.benchmarks} --results {input}"
        " --out {output} > {log} 2>&1"


# The run's last word: its headline numbers against the published ones (paths.reference).
# It reads every run file too, so that a fresh clone, whose committed tables look up to
# date, recomputes them all instead of finding nothing to do.
rule compare_reference:
    input:
        tables=catalogue_tables(),
        runs=all_run_files(),
    output:
        json=f"{RESULTS}/comparison.json",
        md=f"{RESULTS}/comparison.md",
    log:
        f"{OUTPUTS}/logs/compare_reference.log",
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        stem=lambda w, output: os.path.splitext(output.json)[0],
        reference=lambda w, output: reference_flag(),
    message:
        "Comparing the run's headline numbers with the published reference"
    shell:
        "python -m pgrpo.reference compare {params.reference}"
        " --tables {input.tables} --out {params.stem} > {log} 2>&1"
