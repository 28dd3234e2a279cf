# The base policy, materialised once as a safetensors checkpoint (GGUF -> safetensors for
# the default SmolLM2, a random tiny Llama for tests, a hub model at paper scale).


rule materialize_model:
    output:
        directory(f"{RESOURCES}/models/{{model}}"),
    log:
        f"{OUTPUTS}/logs/materialize_model_{{model}}.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/materialize_model_{{model}}.tsv"
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=config_file,
        # Only what changes the checkpoint (not model.precision, a compute setting).
        name=lambda w: MODELS[w.model],
        trust_remote_code=config["model"]["trust_remote_code"],
        seed=config["seed"],
    message:
        "Materialising base model {params.name}"
    shell:
        "python -m pgrpo.materialize --config {params.config} --name {params.name:q}"
        " --out {output} > {log} 2>&1"
