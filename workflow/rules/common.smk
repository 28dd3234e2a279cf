# Configuration validation, output paths and target lists shared by every rule file.
import os

import yaml

from pgrpo.config import TASK_SECTIONS, task_config, validate_config
from pgrpo.models import model_dir_name
from pgrpo.prepare import PREPARED_FILES

validate_config(config, ", ".join(map(str, workflow.configfiles)) or "config")

RESOURCES = config["paths"]["resources"]
OUTPUTS = config["paths"]["outputs"]
RESULTS = config["paths"]["results"]
MODEL_DIR = f"{RESOURCES}/models/{model_dir_name(config['model']['name'])}"
MOVIELENS = f"{RESOURCES}/movielens"
TASKS = config["tasks"]
METHODS = config["train"]["methods"]
# Tasks with true preference groups, whose answers the judge compares (figure 5).
JUDGED_TASKS = [t for t in TASKS if t in ("personas", "reviews")]


wildcard_constraints:
    task="movielens|personas|reviews",
    method="base|grpo|pgrpo",


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


def prepared(task, *names):
    """Files of a task's prepared folder: ``names``, or all that its prepare rule writes."""
    return [f"{RESOURCES}/{task}/{name}" for name in (names or PREPARED_FILES[task])]


def section(task, name):
    """Config section ``name`` (clustering, train, evaluation) with ``task``'s overrides."""
    return task_config(config, task)[name]


def task_data(task):
    """The task's own config section without its overrides (what its data depends on)."""
    return {k: v for k, v in config[task].items() if k not in TASK_SECTIONS}


def clusters_file(task):
    """The clusters a task trains and evaluates with: K-Means (or random) over user
    embeddings; for reviews, the rating groups its prepare rule writes."""
    if task == "reviews":
        return f"{RESOURCES}/reviews/groups.json"
    c = section(task, "clustering")
    return f"{OUTPUTS}/{task}/clusters/{c['method']}_k{c['num_clusters']}.json"


def raw_movielens_dir():
    """Raw MovieLens folder: configured, downloaded (ml-1m) or inside the recbole wheel."""
    cfg = config["movielens"]
    if cfg["raw_dir"]:
        return cfg["raw_dir"]
    if cfg["source"] == "ml-1m":
        return f"{RESOURCES}/raw/ml-1m"
    from pgrpo.data.movielens import default_raw_dir

    return str(default_raw_dir(cfg["source"]))


def raw_reviews_file():
    """Raw reviews: configured, downloaded (goodreads) or the clothing parquet in its wheel."""
    cfg = config["reviews"]
    if cfg["path"]:
        return cfg["path"]
    if cfg["source"] == "goodreads":
        return f"{RESOURCES}/raw/goodreads/{os.path.basename(cfg['url'])}"
    from pgrpo.data.reviews import default_reviews_file

    return str(default_reviews_file())


def train_inputs(wildcards):
    """Model, the task's data and clusters; the rating model for reviews."""
    task = wildcards.task
    inputs = {
        "model": MODEL_DIR,
        "data": prepared(task, "train.jsonl", "test.jsonl"),
        "clusters": clusters_file(task),
    }
    if task == "movielens":
        inputs["data"].append(f"{MOVIELENS}/items.jsonl")
    if task == "reviews":
        inputs["reward_model"] = f"{OUTPUTS}/reviews/rating_model.npz"
    return inputs


def evaluation_inputs(wildcards):
    """What training reads, plus the trained adapter unless the method is "base"."""
    inputs = train_inputs(wildcards)
    if wildcards.method != "base":
        inputs["adapter"] = f"{OUTPUTS}/{wildcards.task}/{wildcards.method}/adapter"
    return inputs


def reward_model_flag(wildcards, input):
    return f"--reward-model {input.reward_model}" if wildcards.task == "reviews" else ""


def judge_inputs(wildcards):
    """Both methods' evaluations, the base model, the task's data (and rating model)."""
    inputs = train_inputs(wildcards)
    del inputs["clusters"]
    inputs["first"] = f"{OUTPUTS}/{wildcards.task}/pgrpo/eval.json"
    inputs["second"] = f"{OUTPUTS}/{wildcards.task}/grpo/eval.json"
    return inputs


def final_targets():
    targets = []
    for task in TASKS:
        targets += [
            f"{RESULTS}/tables/{task}.csv",
            f"{RESULTS}/tables/{task}.md",
            f"{RESULTS}/figures/{task}_reward_curves.png",
            f"{RESULTS}/metrics/{task}.json",
        ]
    if JUDGED_TASKS and {"grpo", "pgrpo"} <= set(METHODS):
        targets.append(f"{RESULTS}/figures/fig5_judge_winrates.png")
    return targets + [
        f"{RESULTS}/tables/simulation.csv",
        f"{RESULTS}/figures/fig1_simulation.png",
    ]


def embedding_inputs(wildcards):
    if wildcards.task == "personas":
        return prepared("personas", "users.jsonl")
    return prepared("movielens", "items.jsonl", "histories.json")


def cluster_inputs(wildcards):
    inputs = {"embeddings": f"{OUTPUTS}/{wildcards.task}/user_embeddings.npz"}
    if wildcards.task == "personas":
        inputs["labels"] = prepared("personas", "users.jsonl")[0]
    return inputs


def report_inputs(wildcards):
    task = wildcards.task
    inputs = {
        "evals": expand(f"{OUTPUTS}/{task}/{{m}}/eval.json", m=["base"] + METHODS),
        "metrics": expand(f"{OUTPUTS}/{task}/{{m}}/metrics.jsonl", m=METHODS),
    }
    if task == "personas":
        inputs["clusters"] = clusters_file(task)
    if task == "reviews":
        inputs["rating_model"] = f"{OUTPUTS}/reviews/rating_model.json"
    return inputs


def report_extra(wildcards, input):
    if wildcards.task == "personas":
        return f"--clusters {input.clusters}"
    if wildcards.task == "reviews":
        return f"--rating-model {input.rating_model}"
    return ""
