# Configuration validation, output paths and target lists shared by every rule file.
import os
import re
import shlex
import sys


from pgrpo.config import (
    TASK_SECTIONS,
    config_snapshot,
    config_sources,
    model_dir_name,
    task_config,
    training_seeds,
    validate_config,
)
from pgrpo.io import PgrpoError
from pgrpo.methods import method_train, named_methods, personalised
from pgrpo.tasks.registry import config_specs


def or_exit(function, *args):
    """``function(*args)``; a PgrpoError (bad config) stops Snakemake with the one line the
    entry points print, instead of a traceback."""
    try:
        return function(*args)
    except PgrpoError as e:
        sys.exit(f"error: {e}")


# Where the values came from, for the error line, in the order Snakemake applies them: the
# Snakefile's configfile, then each --configfile, then --config.
CONFIG_SOURCE = config_sources(
    workflow.configfiles, workflow.overwrite_configfiles, bool(workflow.config_settings.config)
)
or_exit(validate_config, config, CONFIG_SOURCE)

RESOURCES = config["paths"]["resources"]
OUTPUTS = config["paths"]["outputs"]
RESULTS = config["paths"]["results"]
# Every task the config can name (pgrpo/tasks/registry.py), and those the default target
# builds.
TASK_SPECS = or_exit(config_specs, config)
TASKS = config["tasks"]
# Methods by name (pgrpo/methods.py), the one every other is compared with, and those whose
# advantage uses the user's cluster (figure 4 ablates their clusters).
METHODS = list(named_methods(config["train"]))
REFERENCE_METHOD = config["train"]["reference_method"]
COMPARED = [m for m in METHODS if m != REFERENCE_METHOD]
PERSONALISED = personalised(config)
# Tasks whose free-text answers the judge compares (figure 5).
JUDGED_TASKS = [t for t in TASKS if TASK_SPECS[t].judged]
# Models by folder name: the main one (every task) and those compared on MovieLens (table 1,
# figure 2). Training seeds: every trained run is repeated with each.
MAIN = model_dir_name(config["model"]["name"])
MODELS = {model_dir_name(n): n for n in [config["model"]["name"], *config["model"]["compare"]]}
SEEDS = training_seeds(config)
FIGURES = config["figures"]


def one_of(names):
    """A wildcard pattern matching exactly ``names`` (nothing, when there are none)."""
    return "|".join(map(re.escape, names)) or "(?!)"


# Tasks whose groups are clusters of embedded users (the embedding and clustering rules),
# those the judge can compare, those with reference rows and those with a fitted reward.
CLUSTERED = one_of(t for t, spec in TASK_SPECS.items() if spec.grouping == "clusters")
JUDGED = one_of(t for t, spec in TASK_SPECS.items() if spec.judged)
REFERENCED = one_of(t for t, spec in TASK_SPECS.items() if spec.reference_rows)
FITTED = one_of(t for t, spec in TASK_SPECS.items() if spec.reward_model)


wildcard_constraints:
    task=one_of(TASK_SPECS),
    method=rf"({one_of(METHODS)})(-g\d+)?",
    model="[^/]+",
    partition=r"(kmeans|random)_k\d+|groups",
    seed=r"\d+",


def accelerate_launch():
    """`accelerate launch` prefix of a training job and its number of processes (GPUs, or
    CPU processes): launch.accelerate_config, else train.num_processes."""
    from pgrpo.distributed import launch_plan

    return launch_plan(config)


LAUNCH, TRAIN_PROCESSES = or_exit(accelerate_launch)
# What a training job asks a cluster for: one GPU per process when an accelerate config
# file is chosen (SLURM's --gres; `gpu` for executors that read that name).
TRAIN_GPUS = (
    {"gres": f"gpu:{TRAIN_PROCESSES}", "gpu": TRAIN_PROCESSES}
    if config["launch"]["accelerate_config"]
    else {}
)


# The merged, validated config every job reads (configfile + --configfile + --config), as a
# file named by its content: outputs/configs/<sha256>.yaml. Parsing only names it; the
# Snakefile's onstart writes it when the workflow really runs (never in a dry run, nor in a
# cluster job), so `snakemake -n --configfile other.yaml` beside a running workflow cannot
# change what its jobs read, and a job always reads the config its params were computed from.
CONFIG_TEXT, CONFIG = or_exit(config_snapshot, config, OUTPUTS)


def config_file(wildcards, output):
    """The config snapshot, for a rule's ``params.config``. A params function of ``output``
    counts as derived from files, so Snakemake leaves it out of its params rerun trigger: a
    job re-runs when the config sections it declares as params change, not whenever any key
    (and so the snapshot's name) does."""
    return CONFIG


# Start stamp of this invocation (written by the Snakefile's onstart), for the manifest.
RUN_STARTED = f"{OUTPUTS}/run_started.json"


def prepared(task, *names):
    """Files of a task's prepared folder: ``names``, or all that its prepare rule writes."""
    names = names or TASK_SPECS[task].prepared_files
    return [f"{RESOURCES}/{task}/{name}" for name in names]


def raw_input(task):
    """``{"raw": path}`` of the raw data a task's prepare rule reads (the configured path,
    else its place under {resources}/raw); ``{}`` for a task that generates its data."""
    raw = TASK_SPECS[task].raw
    return {"raw": raw(config, RESOURCES)} if raw else {}


def raw_flag(wildcards, input):
    """The prepare command's `` --raw PATH`` for a task that reads raw data (a params
    function of the input: not part of the params rerun trigger)."""
    return f" --raw {shlex.quote(input.raw)}" if "raw" in input.keys() else ""


def data_params(task):
    """The params of a task's prepare rule, what its prepared data depends on: its own
    config section (without its overrides) and the other values its spec names."""
    return {task: task_data(task), **TASK_SPECS[task].data_params(config)}


def section(task, name):
    """Config section ``name`` (clustering, train, evaluation) with ``task``'s overrides."""
    return task_config(config, task)[name]


def method_section(wildcards):
    """The train section as the run's method trains (its own keys over the task's section):
    a training job's params, so that adding a method to train.methods, or changing another
    method's settings, re-runs no other method's training."""
    return method_train(section(wildcards.task, "train"), wildcards.method.partition("-g")[0])


def task_data(task):
    """The task's own config section without its overrides (what its data depends on)."""
    return {k: v for k, v in config[task].items() if k not in TASK_SECTIONS}


def partition(task):
    """The clusters a task trains and evaluates with: ``kmeans_k4`` (the clustering section
    with the task's overrides), or ``groups`` for a task whose groups are given (the
    reviews' rating groups)."""
    if TASK_SPECS[task].grouping == "given":
        return "groups"
    c = section(task, "clustering")
    return f"{c['method']}_k{c['num_clusters']}"


def clusters_file(task, part=None):
    """File of a task's cluster partition (default: the one the task trains with)."""
    part = part or partition(task)
    if part == "groups":
        return f"{RESOURCES}/{task}/groups.json"
    return f"{OUTPUTS}/{task}/clusters/{part}.json"


def run_dir(task, method, seed, model=MAIN, part=None):
    """Folder of one trained run: adapter, metrics.jsonl, eval.json, general.json."""
    return f"{OUTPUTS}/{model}/{task}/{part or partition(task)}/seed{seed}/{method}"


def base_dir(task, model=MAIN):
    return f"{OUTPUTS}/{model}/{task}/{partition(task)}/base"


def method_flags(wildcards):
    """``--method M`` of a run folder ``M`` or ``M-gN`` (figure 7: trained with G = N); the
    ablation runs of figures 4 and 7 skip the validation curve (``--eval-every 0``), which
    only the main runs draw (figure 2)."""
    method, _, size = wildcards.method.partition("-g")
    flags = f"--method {method}" + (f" --group-size {size}" if size else "")
    if size or wildcards.partition != partition(wildcards.task):
        flags += " --eval-every 0"
    return flags


def group_size_folder(method, size):
    """The run folder of ``method`` trained with group size ``size`` (figure 7, on
    figures.task): the plain folder at the task's own group size, ``{method}-g{size}``
    otherwise."""
    own = section(FIGURES["task"], "train")["group_size"]
    return method if size == own else f"{method}-g{size}"


def train_inputs(wildcards):
    """Model, the task's data and clusters; the rating model of a task whose reward is one."""
    task, spec = wildcards.task, TASK_SPECS[wildcards.task]
    inputs = {
        "model": f"{RESOURCES}/models/{wildcards.model}",
        "data": prepared(task, *spec.read_files),
        "clusters": clusters_file(task, wildcards.partition),
    }
    if spec.reward_model:
        inputs["reward_model"] = f"{OUTPUTS}/{task}/rating_model.npz"
    return inputs


def split_run(run):
    """``base`` | ``seed0/grpo``, optionally in a folder ``c8`` (8 test candidates): (policy,
    candidates or None)."""
    parts = run.split("/")
    if re.fullmatch(r"c\d+", parts[-1]):
        return "/".join(parts[:-1]), int(parts[-1][1:])
    return run, None


def evaluation_inputs(wildcards):
    """What training reads, the trained adapter unless the run is "base", and a
    multiple-choice task's test split with other candidate counts (figure 3)."""
    inputs = train_inputs(wildcards)
    policy, size = split_run(wildcards.run)
    if policy != "base":
        folder = f"{OUTPUTS}/{wildcards.model}/{wildcards.task}/{wildcards.partition}"
        inputs["adapter"] = f"{folder}/{policy}/adapter"
    if size is not None:
        inputs["test"] = f"{RESOURCES}/{wildcards.task}/test_c{size}.jsonl"
    return inputs


def heuristics_test(task, size):
    """A multiple-choice task's test split with ``size`` candidates (the main size:
    test.jsonl)."""
    if size == config["evaluation"]["num_candidates"]:
        return f"{RESOURCES}/{task}/test.jsonl"
    return f"{RESOURCES}/{task}/test_c{size}.jsonl"


def heuristics_file(task, size, part=None):
    """A task's reference rows (TaskSpec.reference_rows) with ``size`` candidates."""
    return f"{OUTPUTS}/{task}/{part or partition(task)}/heuristics_c{size}.json"


def evaluation_flags(wildcards, input):
    """The reward model, adapter and test split of an evaluation; ``--group-in-prompt``
    when the run's method trained with the user's cluster in its prompts."""
    flags = [reward_model_flag(wildcards, input)]
    policy, _ = split_run(wildcards.run)
    if policy != "base":
        _, folder = os.path.split(policy)  # seed0/pgrpo -> pgrpo
        method = folder.partition("-g")[0]
        if method_train(section(wildcards.task, "train"), method).get("group_in_prompt"):
            flags.append("--group-in-prompt")
    flags += [f"--adapter {input.adapter}"] if "adapter" in input.keys() else []
    flags += [f"--test {input.test}"] if "test" in input.keys() else []
    return " ".join(f for f in flags if f)


def reward_model_flag(wildcards, input):
    return f"--reward-model {input.reward_model}" if "reward_model" in input.keys() else ""


def judge_inputs(wildcards):
    """The method's and the reference method's evaluations of one seed, the base model, the
    task's data."""
    inputs = train_inputs(wildcards)
    del inputs["clusters"]
    folder = f"{OUTPUTS}/{wildcards.model}/{wildcards.task}/{wildcards.partition}"
    inputs["first"] = f"{folder}/seed{wildcards.seed}/{wildcards.method}/eval.json"
    inputs["second"] = f"{folder}/seed{wildcards.seed}/{REFERENCE_METHOD}/eval.json"
    inputs["agreement"] = f"{folder}/judge_agreement.json"
    return inputs


def agreement_inputs(wildcards):
    """The base model's and the first seed's evaluations (answers of different quality to
    the same prompts), the task's data."""
    inputs = train_inputs(wildcards)
    del inputs["clusters"]
    folder = f"{OUTPUTS}/{wildcards.model}/{wildcards.task}/{wildcards.partition}"
    inputs["evaluations"] = [f"{folder}/base/eval.json"] + [
        f"{folder}/seed{SEEDS[0]}/{method}/eval.json" for method in METHODS
    ]
    return inputs


def general_inputs(wildcards):
    """The model (and adapter) whose general capabilities are measured (table 4)."""
    inputs = {"model": f"{RESOURCES}/models/{wildcards.model}"}
    if wildcards.where != "base":
        inputs["adapter"] = f"{OUTPUTS}/{wildcards.model}/{wildcards.where}/adapter"
    return inputs


def data_files():
    """Raw and prepared data the results come from (checksummed in the manifest)."""
    return [f for task in TASKS for f in [*raw_input(task).values(), *prepared(task)]]


def embedding_inputs(wildcards):
    """The prepared files a task's user texts come from."""
    return prepared(wildcards.task, *TASK_SPECS[wildcards.task].embedding_files)


def cluster_inputs(wildcards):
    """The user embeddings, and the users' true groups where the task knows them."""
    inputs = {"embeddings": f"{OUTPUTS}/{wildcards.task}/user_embeddings.npz"}
    labels = TASK_SPECS[wildcards.task].labels_file
    if labels:
        inputs["labels"] = prepared(wildcards.task, labels)[0]
    return inputs
