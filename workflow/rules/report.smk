# Tables and figures users read, written from the files earlier rules produced.

METHODS = config["train"]["methods"]


rule report_movielens:
    input:
        evals=expand(f"{OUTPUTS}/movielens/{{method}}/eval.json", method=["base"] + METHODS),
        metrics=expand(f"{OUTPUTS}/movielens/{{method}}/metrics.jsonl", method=METHODS),
    output:
        csv=report(
            f"{RESULTS}/tables/movielens.csv",
            caption="../report/movielens_table.rst",
            category="MovieLens",
        ),
        md=f"{RESULTS}/tables/movielens.md",
        summary=f"{RESULTS}/metrics.json",
        figure=report(
            f"{RESULTS}/figures/movielens_reward_curves.png",
            caption="../report/movielens_reward_curves.rst",
            category="MovieLens",
        ),
    log:
        f"{OUTPUTS}/logs/report_movielens.log",
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        evals=lambda w, input: [f"{m}={p}" for m, p in zip(["base"] + METHODS, input.evals)],
        metrics=lambda w, input: [f"{m}={p}" for m, p in zip(METHODS, input.metrics)],
        table=lambda w, output: os.path.splitext(output.csv)[0],
    message:
        "Writing the MovieLens table and reward curves"
    shell:
        "python -m pgrpo.report --eval {params.evals} --metrics {params.metrics}"
        " --table {params.table} --figure {output.figure} --summary {output.summary}"
        " > {log} 2>&1"
