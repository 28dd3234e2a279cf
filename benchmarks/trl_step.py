"""One side of the step benchmark: Hugging Face TRL's ``GRPOTrainer`` on the shared workload.

Started by ``step_throughput.py`` in a process of its own (separate peak memory); writes one
JSON result. Settings mirror pgrpo's trainer: the same model object, LoRA (r, alpha, q/v),
prompts in the same order (``shuffle_dataset=False``), G, completion length, pure sampling at
the same temperature (``top_k=0``, ``top_p=1``), beta, learning rate, one iteration per batch,
and the same precision, the frozen base in its compute dtype as pgrpo loads it (TRL's own
default would be bf16).

    ./with-venv python benchmarks/trl_step.py --result trl.json [workload options]
        [--trl-option gradient_checkpointing=false ...]  (any GRPOConfig field)
"""

from __future__ import annotations

import json
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import TrainerCallback
from workload import lora, model_dir, parser, peak_gpu_gb, peak_rss_gb, synchronize, workload

from pgrpo.models import load_base_model, load_tokenizer


def main() -> None:
    p = parser("TRL GRPOTrainer side of the step benchmark.")
    p.add_argument("--result", required=True)
    p.add_argument("--trainers", default="", help="ignored (the orchestrator's option)")
    p.add_argument("--only", default="trl", help="ignored (the orchestrator's option)")
    args = p.parse_args()
    overrides = dict(parse_option(o) for o in args.trl_option)
    torch.set_num_threads(args.threads)

    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    task, per_step, _ = workload(args)
    rows = [e for step in per_step for e in step]
    dataset = Dataset.from_list(
        [{"prompt": task.messages(e), "example": json.dumps(e)} for e in rows]
    )

    def reward(completions, example, **_) -> list[float]:
        return [
            task.score(c[0]["content"], json.loads(x))[0]
            for c, x in zip(completions, example, strict=True)
        ]

    folder = model_dir(args)
    settings = lora(args)
    peft_config = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=0.0,
        target_modules=list(settings.target_modules), task_type="CAUSAL_LM",
    )  # fmt: skip
    steps = len(per_step)
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, per_device_train_batch_size=args.prompts * args.group_size,
            num_generations=args.group_size, max_completion_length=args.max_new_tokens,
            temperature=args.temperature, top_p=1.0, top_k=0, beta=args.beta,
            learning_rate=args.learning_rate, max_steps=steps, num_iterations=1,
            gradient_accumulation_steps=1, shuffle_dataset=False, seed=args.seed,
            use_cpu=args.device == "cpu", bf16=args.precision == "bf16", fp16=False,
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
            dataloader_num_workers=0, **overrides,
        )  # fmt: skip
        # TRL as its users run it: transformers' default attention (sdpa), not pgrpo's own.
        model = load_base_model(folder, args.precision, attention="sdpa")
        trainer = GRPOTrainer(
            model=model, reward_funcs=reward, args=config,
            train_dataset=dataset, processing_class=load_tokenizer(folder),
            peft_config=peft_config,
        )  # fmt: skip
        timer = StepTimer(count_step=steps - 1, device=args.device)
        trainer.add_callback(timer)
        trainer._generate = timer.timed(trainer._generate, "generate", count_tokens=True)
        trainer._calculate_rewards = timer.timed(trainer._calculate_rewards, "score")
        trainer.train()

    measured = timer.records[args.warmup :]  # the FLOP-counted step is not recorded
    result = {
        "trainer": "trl",
        "label": f"TRL {trl.__version__} GRPOTrainer, gradient checkpointing "
        + ("on" if config.gradient_checkpointing else "off"),
        "steps": measured,
        "flops_per_step": timer.flops,
        "peak_rss_gb": peak_rss_gb(),
        "peak_gpu_gb": peak_gpu_gb(args.device),
    }
    with open(args.result, "w") as f:
        json.dump(result, f)


def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` with a JSON value (``gradient_checkpointing=false``) or a plain string."""
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"error: --trl-option {text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


class StepTimer(TrainerCallback):
    """Times each step and its parts; counts the FLOPs of step ``count_step`` (not timed)."""

    def __init__(self, count_step: int, device: str = "cpu"):
        self.count_step, self.records, self.flops, self.current = count_step, [], None, {}
        self.device = device

    def timed(self, fn, name: str, count_tokens: bool = False):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            out = fn(*a, **kw)
            self.current[name] = self.current.get(name, 0.0) + time.perf_counter() - start
            if count_tokens:  # _generate returns (prompt_ids, completion_ids, ...)
                self.current["completion_tokens"] = sum(len(ids) for ids in out[1])
            return out

        return wrapper

    def on_step_begin(self, args, state, control, **kw):
        self.current = {}
        if state.global_step == self.count_step:
            self.counter = FlopCounterMode(display=False)
            self.counter.__enter__()
        synchronize(self.device)
        self.start = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, **kw):
        self.optimizer_start = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kw):
        self.current["optimizer"] = time.perf_counter() - self.optimizer_start

    def on_step_end(self, args, state, control, **kw):
        synchronize(self.device)
        wall = time.perf_counter() - self.start
        if state.global_step - 1 == self.count_step:
            self.counter.__exit__(None, None, None)
            self.flops = self.counter.get_total_flops()
            return
        parts = ("generate", "score", "optimizer")
        record = {k: self.current.get(k, 0.0) for k in parts}
        record["train"] = wall - sum(record.values())  # log-prob passes and backward
        record.update(step=wall, completion_tokens=self.current.get("completion_tokens", 0))
        self.records.append(record)


if __name__ == "__main__":
    main()
