# Raw data -> prompts' examples. ML-100K ships in the recbole wheel; ML-1M is downloaded
# (pinned sha256) for the paper configuration only.


rule download_movielens_1m:
    output:
        directory(f"{RESOURCES}/raw/ml-1m"),
    log:
        f"{OUTPUTS}/logs/download_movielens_1m.log",
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=1000,
        runtime=30,
    message:
        "Downloading MovieLens-1M (sha256-pinned)"
    shell:
        "python -m pgrpo.download --source ml-1m --out {output} > {log} 2>&1"


rule prepare_movielens:
    input:
        raw=raw_movielens_dir(),
    output:
        expand(f"{MOVIELENS}/{{name}}", name=PREPARED_FILES),
    log:
        f"{OUTPUTS}/logs/prepare_movielens.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/prepare_movielens.tsv"
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=CONFIG,
        out=lambda w, output: os.path.dirname(output[0]),
        movielens=config["movielens"],
        candidates=config["evaluation"]["num_candidates"],
        seed=config["seed"],
    message:
        "Building MovieLens next-item examples from {input.raw}"
    shell:
        "python -m pgrpo.prepare --config {params.config} --out {params.out} > {log} 2>&1"
