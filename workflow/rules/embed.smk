# User embeddings (all-MiniLM-L6-v2): MovieLens, from the text of each user's training
# history; personas, from the messages of each user's profile.


rule embed_users:
    input:
        data=embedding_inputs,
    output:
        f"{OUTPUTS}/{{task}}/user_embeddings.npz",
    log:
        f"{OUTPUTS}/logs/embed_users_{{task}}.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/embed_users_{{task}}.tsv"
    wildcard_constraints:
        task=CLUSTERED,
    conda:
        "../../envs/pgrpo.yaml"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=30,
    params:
        config=config_file,
        data=lambda w, input: os.path.dirname(input.data[0]),
        embedding=config["embedding"],
    message:
        "Embedding {wildcards.task} users with {params.embedding[model]}"
    shell:
        "python -m pgrpo.embed --config {params.config} --task {wildcards.task}"
        " --data {params.data} --out {output} > {log} 2>&1"
