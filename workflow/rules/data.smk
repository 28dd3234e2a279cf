# Raw data -> prompts' examples. ML-100K ships in the recbole wheel; ML-1M is downloaded
# (pinned sha256) for the paper configuration only.


rule download_movielens_1m:
    output:
        directory(f"{RESOURCES}/raw/ml-1m"),
    log:
        f"{OUTPUTS}/logs/download_movielens_1m.log",
    message:
        "Downloading MovieLens-1M (sha256-pinned)"
    resources:
        mem_mb=1000,
        runtime=30,
    shell:
        "python -m pgrpo.download --source ml-1m --out {output} > {log} 2>&1"


rule prepare_movielens:
    input:
        raw=raw_movielens_dir(),
    output:
        expand(f"{MOVIELENS}/{{name}}", name=PREPARED_FILES),
    params:
        config=CONFIG,
        out=MOVIELENS,
        movielens=config["movielens"],
        candidates=config["evaluation"]["num_candidates"],
        seed=config["seed"],
    log:
        f"{OUTPUTS}/logs/prepare_movielens.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/prepare_movielens.tsv"
    message:
        "Building MovieLens next-item examples from {input.raw}"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python -m pgrpo.prepare --config {params.config} --out {params.out} > {log} 2>&1"
