# User embeddings from the text of each user's training history (all-MiniLM-L6-v2).


rule embed_users:
    input:
        data=expand(f"{MOVIELENS}/{{name}}", name=["items.jsonl", "histories.json"]),
    output:
        f"{OUTPUTS}/movielens/user_embeddings.npz",
    log:
        f"{OUTPUTS}/logs/embed_users.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/embed_users.tsv"
    conda:
        "../../envs/pgrpo.yaml"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        config=CONFIG,
        data=lambda w, input: os.path.dirname(input.data[0]),
        embedding=config["embedding"],
    message:
        "Embedding users with {params.embedding[model]}"
    shell:
        "python -m pgrpo.embed --config {params.config} --data {params.data} --out {output}"
        " > {log} 2>&1"
