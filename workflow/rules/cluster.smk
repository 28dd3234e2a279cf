# User preference clusters: K-Means over user embeddings, or random with the same sizes.
# Personas also report the adjusted Rand index against the users' true personas.


rule cluster_users:
    input:
        unpack(cluster_inputs),
    output:
        f"{OUTPUTS}/{{task}}/clusters/{{method}}_k{{k}}.json",
    log:
        f"{OUTPUTS}/logs/cluster_users_{{task}}_{{method}}_k{{k}}.log",
    wildcard_constraints:
        task=CLUSTERED,
        method="kmeans|random",
        k=r"\d+",
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=config_file,
        labels=lambda w, input: f"--labels {input.labels}" if "labels" in input.keys() else "",
        seed=config["seed"],
    message:
        "Clustering {wildcards.task} users: {wildcards.method}, K={wildcards.k}"
    shell:
        "python -m pgrpo.cluster --config {params.config} --embeddings {input.embeddings}"
        " --method {wildcards.method} --num-clusters {wildcards.k} {params.labels}"
        " --out {output} > {log} 2>&1"
