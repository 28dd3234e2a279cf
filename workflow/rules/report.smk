# Tables and figures users read, written from the files earlier rules produced.


rule report:
    input:
        unpack(report_inputs),
    output:
        csv=report(
            f"{RESULTS}/tables/{{task}}.csv",
            caption="../report/task_table.rst",
            category="{task}",
        ),
        md=f"{RESULTS}/tables/{{task}}.md",
        summary=f"{RESULTS}/metrics/{{task}}.json",
        figure=report(
            f"{RESULTS}/figures/{{task}}_reward_curves.png",
            caption="../report/task_reward_curves.rst",
            category="{task}",
        ),
    log:
        f"{OUTPUTS}/logs/report_{{task}}.log",
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        evals=lambda w, input: [f"{m}={p}" for m, p in zip(["base"] + METHODS, input.evals)],
        metrics=lambda w, input: [f"{m}={p}" for m, p in zip(METHODS, input.metrics)],
        table=lambda w, output: os.path.splitext(output.csv)[0],
        extra=report_extra,
    message:
        "Writing the {wildcards.task} table and reward curves"
    shell:
        "python -m pgrpo.report --task {wildcards.task} --eval {params.evals}"
        " --metrics {params.metrics} --table {params.table} --figure {output.figure}"
        " --summary {output.summary} {params.extra} > {log} 2>&1"
