# Configuration validation, output paths and target lists shared by every rule file.
import os

import yaml

from pgrpo.config import validate_config
from pgrpo.models import model_dir_name
from pgrpo.prepare import OUTPUT_FILES

validate_config(config, ", ".join(map(str, workflow.configfiles)) or "config")

RESOURCES = config["paths"]["resources"]
OUTPUTS = config["paths"]["outputs"]
RESULTS = config["paths"]["results"]
MODEL_DIR = f"{RESOURCES}/models/{model_dir_name(config['model']['name'])}"
MOVIELENS = f"{RESOURCES}/movielens"
CLUSTERS = (
    f"{OUTPUTS}/movielens/clusters/"
    f"{config['clustering']['method']}_k{config['clustering']['num_clusters']}.json"
)
PREPARED_FILES = list(OUTPUT_FILES)


def effective_config():
    """The merged, validated config every entry point reads (configfile + --configfile +
    --config). Rewritten only when it changes; rules re-run on the config sections they
    declare as params, not on this file's time stamp."""
    path = Path(OUTPUTS) / "effective_config.yaml"
    text = yaml.safe_dump(config, sort_keys=True)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(path)


CONFIG = effective_config()


def accelerate_launch():
    """`accelerate launch` prefix for train.num_processes processes (GPUs, or CPU processes)."""
    from pgrpo.launch import accelerate_shell_prefix

    return accelerate_shell_prefix(config["train"]["num_processes"])


def raw_movielens_dir():
    """Raw MovieLens folder: configured, downloaded (ml-1m) or inside the recbole wheel."""
    cfg = config["movielens"]
    if cfg["raw_dir"]:
        return cfg["raw_dir"]
    if cfg["source"] == "ml-1m":
        return f"{RESOURCES}/raw/ml-1m"
    from pgrpo.data.movielens import default_raw_dir

    return str(default_raw_dir(cfg["source"]))


def final_targets():
    return [
        f"{RESULTS}/tables/movielens.csv",
        f"{RESULTS}/tables/movielens.md",
        f"{RESULTS}/figures/movielens_reward_curves.png",
        f"{RESULTS}/tables/simulation.csv",
        f"{RESULTS}/figures/fig1_simulation.png",
    ]


def evaluation_inputs(wildcards):
    """Model, test data and clusters; plus the trained adapter, unless method is "base"."""
    inputs = {
        "model": MODEL_DIR,
        "data": expand(f"{MOVIELENS}/{{name}}", name=["items.jsonl", "test.jsonl"]),
        "clusters": CLUSTERS,
    }
    if wildcards.method != "base":
        inputs["adapter"] = f"{OUTPUTS}/movielens/{wildcards.method}/adapter"
    return inputs
