# The paper's Figure 1 / Example 1.1 as a simulation (seconds on a CPU, no data, no model).


rule simulate:
    output:
        table=report(
            f"{RESULTS}/tables/simulation.csv",
            caption="../report/simulation.rst",
            category="Simulation",
        ),
        figure=report(
            f"{RESULTS}/figures/fig1_simulation.png",
            caption="../report/simulation.rst",
            category="Simulation",
        ),
    log:
        f"{OUTPUTS}/logs/simulate.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/simulate.tsv"
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        config=config_file,
        simulation=config["simulation"],
    message:
        "Simulating the paper's Figure 1 ({params.simulation[seeds]} seeds per method)"
    shell:
        "python -m pgrpo.simulate --config {params.config} --table {output.table}"
        " --figure {output.figure} > {log} 2>&1"
