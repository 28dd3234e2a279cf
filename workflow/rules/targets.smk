# The runs behind each table and figure of the catalogue, and the default target.
# A run is a file named by a key MODEL/TASK/METHOD/SEED[/VARIANT] (pgrpo/catalogue.py).

# Each task's own table (TaskSpec.table), then table 4 (every task's adapters).
TABLES = {
    **{spec.table: task for task, spec in TASK_SPECS.items() if spec.table},
    "table4_general": None,
}
# The model comparison and the ablations are drawn on one task, figures.task (MovieLens):
# figure 3 needs its candidates, figure 4 its clusters.
FIGURE_TASK = FIGURES["task"]
FIGURE_SPEC = TASK_SPECS[FIGURE_TASK]
FIGURES_OF = {
    "fig2_reward_curves": FIGURE_TASK,
    "fig3_accuracy_vs_candidates": FIGURE_SPEC.test_candidates and FIGURE_TASK,
    "fig4_cluster_ablation": FIGURE_SPEC.grouping == "clusters" and FIGURE_TASK,
    "fig7_group_size": FIGURE_TASK,
    "fig5_judge_winrates": None,
}


def _trained(task, model=MAIN, part=None, variant="", methods=None, kinds=("eval.json",)):
    """{path: key} of every seed of ``methods`` (default: all) on ``task``."""
    runs = {}
    for method in methods or METHODS:
        for seed in SEEDS:
            folder = run_dir(task, method, seed, model, part)
            key = "/".join([model, task, method, str(seed)] + ([variant] if variant else []))
            runs.update({f"{folder}/{kind}": key for kind in kinds})
    return runs


def task_table_runs(task):
    """A task's table: the base model and every method (every compared model on the figure
    task), its reference rows at the main candidate count, its clusters' agreement with the
    true groups, its fitted reward's accuracy."""
    runs, spec = {}, TASK_SPECS[task]
    for model in MODELS if task == FIGURE_TASK else [MAIN]:
        runs[f"{base_dir(task, model)}/eval.json"] = f"{model}/{task}/base/-"
        runs.update(_trained(task, model, kinds=("eval.json", "metrics.jsonl")))
    if spec.reference_rows:
        size = config["evaluation"]["num_candidates"]
        runs[heuristics_file(task, size)] = f"{MAIN}/{task}/heuristics/-"
    if spec.labels_file:
        runs[clusters_file(task)] = f"{MAIN}/{task}/clusters/-"
    if spec.reward_model:
        runs[f"{OUTPUTS}/{task}/rating_model.json"] = f"{MAIN}/{task}/rating_model/-"
    return {**runs, **group_names_run(task)}


def group_names_run(task):
    """A task whose groups are given (the reviews' ratings): its groups file, which names the
    clusters the training metrics number (cluster 0 is "rating 1")."""
    if partition(task) != "groups":
        return {}
    return {clusters_file(task): f"{MAIN}/{task}/groups/-"}


def general_runs():
    runs = {f"{OUTPUTS}/{MAIN}/base/general.json": f"{MAIN}/none/base/-"}
    for task in TASKS:
        runs.update(_trained(task, kinds=("general.json",)))
    return runs


def candidate_runs(task=FIGURE_TASK):
    """Evaluations at each test candidate-set size (figure 3), with the reference rows."""
    runs, main = {}, config["evaluation"]["num_candidates"]
    for size in FIGURES["candidate_sizes"]:
        variant = f"c{size}"
        folder = "" if size == main else variant  # the main size is the plain evaluation
        runs[os.path.join(base_dir(task), folder, "eval.json")] = f"{MAIN}/{task}/base/-/{variant}"
        if TASK_SPECS[task].reference_rows:
            runs[heuristics_file(task, size)] = f"{MAIN}/{task}/heuristics/-/{variant}"
        for method in METHODS:
            for seed in SEEDS:
                path = os.path.join(run_dir(task, method, seed), folder, "eval.json")
                runs[path] = f"{MAIN}/{task}/{method}/{seed}/{variant}"
    return runs


def ablation_runs(task=FIGURE_TASK):
    """The personalised methods (P-GRPO) with K-Means and random partitions (figure 4); the
    reference method (GRPO) for comparison."""
    kinds = ("eval.json", "metrics.jsonl")
    main = partition(task)
    runs = _trained(task, part=main, variant=main, methods=[REFERENCE_METHOD], kinds=kinds)
    parts = [f"kmeans_k{k}" for k in FIGURES["cluster_counts"]]
    parts += [f"random_k{k}" for k in FIGURES["random_cluster_counts"]]
    for part in parts:
        runs.update(_trained(task, part=part, variant=part, methods=PERSONALISED, kinds=kinds))
    return runs


def group_size_runs(task=FIGURE_TASK):
    """Every method trained with each group size of figures.group_sizes (figure 7)."""
    runs = {}
    for size in FIGURES["group_sizes"]:
        for method in METHODS:
            for seed in SEEDS:
                folder = run_dir(task, group_size_folder(method, size), seed)
                key = f"{MAIN}/{task}/{method}/{seed}/g{size}"
                runs.update({f"{folder}/{kind}": key for kind in ("eval.json", "metrics.jsonl")})
    return runs


def judge_runs():
    """Each method's win rates over the reference method's answers, per seed (figure 5)."""
    runs = {}
    for task in JUDGED_TASKS:
        for method in COMPARED:
            for seed in SEEDS:
                folder = run_dir(task, method, seed)
                runs[f"{folder}/judge_winrates.json"] = f"{MAIN}/{task}/{method}/{seed}"
    return runs


def catalogue_runs(name):
    """{path: key} of the runs a table or figure is made of."""
    if name == "table4_general":
        return general_runs()
    if name in TABLES:
        return task_table_runs(TABLES[name])
    if name == "fig2_reward_curves":
        runs = {}
        for model in MODELS:
            runs.update(_trained(FIGURE_TASK, model, kinds=("metrics.jsonl",)))
        return runs
    if name == "fig3_accuracy_vs_candidates":
        return candidate_runs()
    if name == "fig4_cluster_ablation":
        return ablation_runs()
    if name == "fig7_group_size":
        return group_size_runs()
    if name == "fig6_training_dynamics":
        runs = {}
        for task in TASKS:
            runs.update(_trained(task, kinds=("metrics.jsonl",)))
            runs.update(group_names_run(task))
        return runs
    return judge_runs()


def catalogue_inputs(wildcards):
    return list(catalogue_runs(wildcards.get("table") or wildcards.get("figure")))


def run_args(name, input):
    """KEY=PATH arguments of pgrpo.catalogue / pgrpo.figures for the runs of ``name``."""
    runs = catalogue_runs(name)
    return " ".join(f"{runs[path]}={path}" for path in input)


def main_model_runs(name):
    """The run files of ``name`` that belong to the main model (config model.name)."""
    return [path for path, key in catalogue_runs(name).items() if key.startswith(f"{MAIN}/")]


def catalogue_args(wildcards, input):
    return run_args(wildcards.get("table") or wildcards.get("figure"), input)


def catalogue_names():
    """The tables and figures this config's tasks and methods allow."""
    compared = bool(COMPARED)  # a method besides the reference
    tables = [t for t, task in TABLES.items() if task is None or task in TASKS]
    figures = [f for f, task in FIGURES_OF.items() if task in TASKS and compared]
    if not PERSONALISED and "fig4_cluster_ablation" in figures:
        figures.remove("fig4_cluster_ablation")
    if JUDGED_TASKS and compared:
        figures.append("fig5_judge_winrates")
    if compared:
        figures.append("fig6_training_dynamics")
    return tables, figures


def catalogue_files():
    tables, figures = catalogue_names()
    files = [f"{RESULTS}/tables/{t}.{ext}" for t in tables for ext in ("csv", "md", "tex")]
    files += [f"{RESULTS}/metrics/{t}.json" for t in tables]
    files += [f"{RESULTS}/figures/{f}.{ext}" for f in figures for ext in ("png", "svg")]
    files += [f"{RESULTS}/tables/{f}.{ext}" for f in figures for ext in ("csv", "md", "tex")]
    if "fig2_reward_curves" in figures:  # the main model's curves, DVC's plots (dvc.yaml)
        files.append(f"{RESULTS}/metrics/reward_curves.csv")
    return files + [f"{RESULTS}/tables/simulation.csv", f"{RESULTS}/figures/fig1_simulation.png"]


def all_run_files():
    """Every run file behind the catalogue (on a fresh clone, none exists yet)."""
    tables, figures = catalogue_names()
    return sorted({path for name in tables + figures for path in catalogue_runs(name)})


def catalogue_tables():
    """The .csv of every table and figure: what the comparison with the reference reads."""
    tables, figures = catalogue_names()
    return [f"{RESULTS}/tables/{name}.csv" for name in tables + figures]


def reference_flag():
    """``--reference FILE`` of the published reference when there is one (a fork may not have
    published yet: the comparison then lists every number as new). A relative path is the
    repository's (next to the Snakefile), whatever directory the workflow runs in. It is a
    parameter read through the output, not an input: the repository's absolute place must
    not make a moved copy of a finished run re-run its comparison (republishing does not
    either: `--forcerun compare_reference`)."""
    path = config["paths"]["reference"]
    if path and not os.path.isabs(path):
        path = os.path.join(workflow.basedir, path)
    return f"--reference {path}" if path and os.path.exists(path) else ""


def final_targets():
    targets = catalogue_files() + [f"{RESULTS}/manifest.json"]
    if config["paths"]["reference"]:
        targets.append(f"{RESULTS}/comparison.md")
    return targets
