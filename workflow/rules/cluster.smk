# User preference clusters: K-Means over user embeddings, or random with the same sizes.


rule cluster_users:
    input:
        f"{OUTPUTS}/movielens/user_embeddings.npz",
    output:
        f"{OUTPUTS}/movielens/clusters/{{method}}_k{{k}}.json",
    log:
        f"{OUTPUTS}/logs/cluster_users_{{method}}_k{{k}}.log",
    wildcard_constraints:
        method="kmeans|random",
        k=r"\d+",
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=CONFIG,
        seed=config["seed"],
    message:
        "Clustering users: {wildcards.method}, K={wildcards.k}"
    shell:
        "python -m pgrpo.cluster --config {params.config} --embeddings {input}"
        " --method {wildcards.method} --num-clusters {wildcards.k} --out {output} > {log} 2>&1"
