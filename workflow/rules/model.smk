# The base policy, materialised once as a safetensors checkpoint (GGUF -> safetensors for
# the default SmolLM2, a random tiny Llama for tests, a hub model at paper scale).


rule materialize_model:
    output:
        directory(MODEL_DIR),
    log:
        f"{OUTPUTS}/logs/materialize_model.log",
    benchmark:
        f"{OUTPUTS}/benchmarks/materialize_model.tsv"
    conda:
        "../../envs/pgrpo.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=CONFIG,
        # Only what changes the checkpoint (not model.precision, a compute setting).
        model={k: config["model"][k] for k in ("name", "trust_remote_code")},
        seed=config["seed"],
    message:
        "Materialising base model {params.model[name]}"
    shell:
        "python -m pgrpo.materialize --config {params.config} --out {output} > {log} 2>&1"
