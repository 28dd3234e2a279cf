"""Memory plan of a training job: the bytes one GPU holds, from a model's ``config.json``.

Computed, not measured. Per process (one GPU) of an accelerate file (workflow/accelerate/):

* frozen base weights in the compute dtype (``model.precision``: bf16 = 2 bytes, fp32 = 4);
* the LoRA adapter, its gradients and AdamW's two moments, all float32 (4 + 4 + 8 bytes per
  adapter parameter);
* activations saved for the backward pass, without recomputation (:func:`layer_activation_bytes`),
  for every token of the training pass: each prompt once, then its G answers side by side
  (the tree rollout of pgrpo/rollout.py), so prompt + G * max_new_tokens tokens per prompt;
* the logits of the scored positions (:func:`logits_bytes`);
* the key/value cache of generation (:func:`kv_cache_bytes`).

Data parallel, every process holds all the weights and states and prompts_per_step /
processes prompts. Sharded (FSDP), the weights, the adapter, its gradients and AdamW state
are divided by the process count, plus the weights gathered at a time (the root's own
embedding, output layer and final norm, and two decoder layers: the one running and the one
prefetched); activations, logits and cache stay per process. The sum gets a margin for the
allocator's fragmentation and the small tensors left out (attention masks, rotary tables,
the per-sequence float32 softmax), and the CUDA context.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgrpo.config import model_dir_name, task_config
from pgrpo.distributed import accelerate_file
from pgrpo.io import PgrpoError, read_json

GIB = 2**30
# Defaults of the plan (benchmarks/memory_plan.py's arguments).
PROMPT_TOKENS = 512  # the longest prompt of a step (a step's prompts are padded to it)
MARGIN = 0.20  # allocator fragmentation and the tensors left out
CUDA_CONTEXT_GIB = 1.0
GPU_MEMORY_GIB = 80.0  # an 80 GB A100 or H100
ADAPTER_BYTES = 4  # float32 LoRA matrices, and so their gradients
ADAM_BYTES = 8  # two float32 moments per adapter parameter
REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "vocab_size")  # fmt: skip


@dataclass(frozen=True)
class ModelShape:
    """The fields of a decoder-only model's ``config.json`` that its memory depends on."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    attention_bias: bool = False

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:  # grouped-query attention: fewer key/value heads than queries
        return self.kv_heads * self.head_dim

    @classmethod
    def from_config(cls, config: dict, source: str) -> ModelShape:
        """From a ``config.json`` dict, with transformers' defaults: ``num_key_value_heads``
        = the heads, ``head_dim`` = hidden_size / heads, ``tie_word_embeddings`` true."""
        missing = [key for key in REQUIRED if not isinstance(config.get(key), int)]
        if missing:
            raise PgrpoError(f"{source}: no integer {missing[0]} (a decoder's config.json?)")
        heads = config["num_attention_heads"]
        return cls(
            hidden=config["hidden_size"],
            intermediate=config["intermediate_size"],
            layers=config["num_hidden_layers"],
            heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            vocab=config["vocab_size"],
            tied=config.get("tie_word_embeddings", True),
            attention_bias=config.get("attention_bias", False),
        )


def read_model_shape(path: str | Path) -> ModelShape:
    """A model folder holding ``config.json``, or the JSON file itself."""
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    config = read_json(file)
    if not isinstance(config, dict):
        raise PgrpoError(f"{file}: not a JSON object (a model's config.json?)")
    return ModelShape.from_config(config, str(file))


def find_model_shape(name: str, models_dir: Path, given: dict[str, Path]) -> ModelShape:
    """The shape of ``model.name``-style ``name``: ``given[name]``, else ``name`` as a local
    folder or file, else ``<models_dir>/<model_dir_name(name)>.json``."""
    if name in given:
        return read_model_shape(given[name])
    fixture = models_dir / f"{model_dir_name(name)}.json"
    for path in (Path(name), fixture):
        if path.exists():
            return read_model_shape(path)
    raise PgrpoError(
        f"model {name}: no config.json (not a local folder, no {fixture}; "
        f"give --model-config {name}=PATH)"
    )


def module_dims(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear module of a decoder layer, by its name."""
    h, i = shape.hidden, shape.intermediate
    return {
        "q_proj": (h, shape.q_dim), "k_proj": (h, shape.kv_dim), "v_proj": (h, shape.kv_dim),
        "o_proj": (shape.q_dim, h),
        "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
    }  # fmt: skip


def parameter_count(shape: ModelShape) -> int:
    """Embedding (+ an untied output layer) + per layer: the linear modules, their biases
    where ``attention_bias``, two RMSNorm weights; + the final norm."""
    linear = sum(n_in * n_out for n_in, n_out in module_dims(shape).values())
    bias = (shape.q_dim + 2 * shape.kv_dim) if shape.attention_bias else 0
    per_layer = linear + bias + 2 * shape.hidden
    embeddings = shape.vocab * shape.hidden * (1 if shape.tied else 2)
    return embeddings + shape.layers * per_layer + shape.hidden


def lora_parameter_count(shape: ModelShape, r: int, target_modules: list[str]) -> int:
    """LoRA on every layer: A [r, in] + B [out, r] per target module, r * (in + out)."""
    dims = module_dims(shape)
    unknown = [m for m in target_modules if m not in dims]
    if unknown:
        raise PgrpoError(
            f"lora.target_modules: {unknown[0]!r} is not one of {', '.join(dims)} "
            "(the memory plan knows Llama-style module names)"
        )
    return shape.layers * sum(r * sum(dims[m]) for m in target_modules)


def layer_activation_bytes(shape: ModelShape, dtype_bytes: int) -> int:
    """Activations one decoder layer saves for backward, per token:
    dtype_bytes * (4h + 2q + 2kv + 4i).

    Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
    Models", section 4.1) count 34 s b h bytes per GPT layer in 16-bit (+ 5 a s^2 b for the
    attention scores): every tensor kept for the backward pass. Redone for a Llama-style layer
    (RMSNorm, grouped-query attention, gated MLP, no dropout): the two norms' inputs (2h), the
    attention projections' input (h), queries, keys and values (q + 2kv), the attention output
    (q), the MLP's input (h), and its gate, up, activation and product (4i). No s^2 term: on
    GPUs attention is PyTorch's fused scaled_dot_product_attention (``model.attention: auto``),
    which keeps no score matrix. h = hidden_size, q = heads * head_dim, kv = key/value heads *
    head_dim, i = intermediate_size.
    """
    h, q, kv, i = shape.hidden, shape.q_dim, shape.kv_dim, shape.intermediate
    return dtype_bytes * (2 * h + h + (q + 2 * kv) + q + h + 4 * i)


def kv_cache_bytes(shape: ModelShape, tokens: int, dtype_bytes: int) -> int:
    """Keys and values of ``tokens`` tokens: 2 * layers * kv_heads * head_dim * tokens * bytes."""
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * tokens * dtype_bytes


def logits_bytes(shape: ModelShape, rows: int, dtype_bytes: int) -> int:
    """Logits of ``rows`` scored positions: rows * vocab in the compute dtype, twice (the copy
    kept for the backward pass and its gradient; pgrpo.loss.token_log_probs takes the
    float32 log-softmax one sequence at a time)."""
    return 2 * rows * shape.vocab * dtype_bytes


@dataclass(frozen=True)
class Workload:
    """One optimisation step of a training job."""

    prompts_per_step: int
    group_size: int
    max_new_tokens: int
    prompt_tokens: int

    @property
    def tokens_per_prompt(self) -> int:  # the prompt once, then its G answers side by side
        return self.prompt_tokens + self.group_size * self.max_new_tokens

    @property
    def scored_rows_per_prompt(self) -> int:
        """Output-layer rows per prompt: the prompt's last position (every answer's first
        token) and each answer's positions before its last token (pgrpo/rollout.py)."""
        return 1 + self.group_size * (self.max_new_tokens - 1)


@dataclass(frozen=True)
class Layout:
    """An accelerate file: its name, processes (GPUs), whether it shards (FSDP)."""

    name: str
    processes: int
    sharded: bool


def accelerate_layouts(folder: Path) -> list[Layout]:
    """The accelerate files of ``folder``, fewest GPUs first (data parallel before FSDP)."""
    layouts = []
    for path in sorted(folder.glob("*.yaml")):
        settings = accelerate_file(path)
        sharded = settings.get("distributed_type") == "FSDP"
        layouts.append(Layout(path.stem, settings["num_processes"], sharded))
    return sorted(layouts, key=lambda layout: (layout.processes, layout.sharded))


@dataclass(frozen=True)
class Estimate:
    """Bytes per GPU of one training job under one layout."""

    weights: int
    adapter: int  # the LoRA matrices, their gradients and AdamW's moments
    activations: int
    logits: int
    kv_cache: int
    margin: float
    context: int

    @property
    def total(self) -> int:
        return self.weights + self.adapter + self.activations + self.logits + self.kv_cache

    @property
    def needed(self) -> float:
        return self.total * (1 + self.margin) + self.context


def estimate(
    shape: ModelShape, lora: dict, work: Workload, layout: Layout, precision: str,
    margin: float = MARGIN, context_gib: float = CUDA_CONTEXT_GIB,
) -> Estimate | None:  # fmt: skip
    """Bytes per GPU; None when the step's prompts do not split evenly over the processes
    (the trainer refuses that)."""
    if work.prompts_per_step % layout.processes:
        return None
    dtype_bytes = 2 if precision == "bf16" else 4
    shards = layout.processes if layout.sharded else 1
    weights = parameter_count(shape) * dtype_bytes / shards
    if layout.sharded:
        root = shape.vocab * shape.hidden * (1 if shape.tied else 2) + shape.hidden
        layer = (parameter_count(shape) - root) / shape.layers
        weights += (root + 2 * layer) * dtype_bytes
    adapter_params = lora_parameter_count(shape, lora["r"], lora["target_modules"])
    prompts = work.prompts_per_step // layout.processes
    tokens = prompts * work.tokens_per_prompt
    return Estimate(
        weights=round(weights),
        adapter=round(adapter_params * (2 * ADAPTER_BYTES + ADAM_BYTES) / shards),
        activations=tokens * shape.layers * layer_activation_bytes(shape, dtype_bytes),
        logits=logits_bytes(shape, prompts * work.scored_rows_per_prompt, dtype_bytes),
        kv_cache=kv_cache_bytes(shape, tokens, dtype_bytes),
        margin=margin,
        context=round(context_gib * GIB),
    )


@dataclass(frozen=True)
class Job:
    """A kind of training job of a config: its model, task and step."""

    model: str
    task: str
    work: Workload


def training_jobs(config: dict, prompt_tokens: int) -> list[Job]:
    """The distinct training jobs of a validated config: the main model on every task (and on
    ``figures.task`` with each ``figures.group_sizes``), the compared models on
    ``figures.task``."""
    main, jobs = config["model"]["name"], []
    for task in config["tasks"]:
        train = task_config(config, task)["train"]
        step = (train["prompts_per_step"], train["group_size"], train["max_new_tokens"])
        jobs.append(Job(main, task, Workload(*step, prompt_tokens)))
        if task != config["figures"]["task"]:
            continue
        for size in config["figures"]["group_sizes"]:
            if size != train["group_size"]:
                work = Workload(step[0], size, step[2], prompt_tokens)
                jobs.append(Job(main, task, work))
        jobs += [Job(model, task, Workload(*step, prompt_tokens))
                 for model in config["model"]["compare"]]  # fmt: skip
    return jobs


Row = tuple[Job, list[tuple[Layout, Estimate | None]]]


def memory_plan(
    config: dict, shapes: dict[str, ModelShape], layouts: list[Layout],
    prompt_tokens: int = PROMPT_TOKENS, margin: float = MARGIN,
    context_gib: float = CUDA_CONTEXT_GIB,
) -> list[Row]:  # fmt: skip
    """Every training job of ``config`` under every layout; ``shapes`` by model name."""
    rows = []
    for job in training_jobs(config, prompt_tokens):
        estimates = [
            (layout, estimate(shapes[job.model], config["lora"], job.work, layout,
                              config["model"]["precision"], margin, context_gib))
            for layout in layouts
        ]  # fmt: skip
        rows.append((job, estimates))
    return rows


def fewest_gpus(
    rows: list[Row], model: str | None = None, gpu_gib: float = GPU_MEMORY_GIB
) -> Layout | None:
    """The first layout (fewest GPUs first) where every job of ``model`` (None: every job)
    fits in ``gpu_gib``; None when none does."""
    fits: dict[Layout, bool] = {}
    for job, estimates in rows:
        if model is not None and job.model != model:
            continue
        for layout, est in estimates:
            ok = est is not None and est.needed <= gpu_gib * GIB
            fits[layout] = fits.get(layout, True) and ok
    return next((layout for layout, ok in fits.items() if ok), None)
