"""The GPU paths: tree rollouts, bf16 training, an accelerate launch of SmolLM2 and the cluster
statistics over NCCL, on CUDA. Marked ``gpu``: where torch sees no CUDA device every test here
skips and says why (``pytest -m gpu`` runs only these; ``-ra`` prints the reasons)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_rollout import (
    DTYPES,
    PROMPTS,
    assert_tree_equals_full_sequences,
    left_padded,
    some_completions,
    tiny_model,
    tiny_policy,
)
from tolerances import assert_equal_up_to_rounding

from pgrpo.rollout import completion_log_probs

GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
NO_GPU = (
    f"no CUDA device: torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}) sees no GPU"
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(GPUS == 0, reason=NO_GPU)]


def on_cuda(batch):
    """A PromptBatch or Completions with its tensors on the GPU."""
    fields = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in vars(batch).items()}
    return type(batch)(**fields)


@pytest.mark.numerics
@pytest.mark.parametrize("group_size,steps", [(1, 1), (3, 4), (4, 6)])
def test_tree_log_probs_and_gradients_equal_full_sequences_on_cuda(group_size, steps):
    """The CPU test of tests/test_rollout.py on the GPU, with the attention GPUs use (sdpa)."""
    policy = tiny_policy(attention="sdpa").to("cuda", DTYPES["sdpa"])
    completions = on_cuda(some_completions(len(PROMPTS), group_size, steps, seed=steps))
    assert_tree_equals_full_sequences(
        policy, on_cuda(left_padded(PROMPTS)), completions, group_size
    )


@pytest.mark.numerics
def test_bf16_training_precision_on_cuda(tmp_path):
    """``precision: bf16`` on the GPU: the frozen base in bfloat16, the adapter, its gradients
    and the log-probs float32, within the CPU test's bound of the float32 model."""
    from pgrpo.models import LoraSettings, add_lora, autocast, load_base_model

    tiny_model(seed=10).save_pretrained(tmp_path)
    adapter = {n: p for n, p in tiny_policy(seed=10).named_parameters() if p.requires_grad}
    policies = {}
    for precision in ("fp32", "bf16"):
        policy = add_lora(load_base_model(tmp_path, precision, attention="sdpa"),
                          LoraSettings(r=4, alpha=8))  # fmt: skip
        policy.load_state_dict(adapter, strict=False)
        policies[precision] = policy.cuda()
    trainable = [p for p in policies["bf16"].parameters() if p.requires_grad]
    frozen = {p.dtype for p in policies["bf16"].parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16} and {p.dtype for p in trainable} == {torch.float32}
    prompts = on_cuda(left_padded(PROMPTS))
    completions = on_cuda(some_completions(len(PROMPTS), 3, 4, seed=4))
    mask = completions.mask.bool()
    exact = completion_log_probs(policies["fp32"], prompts, completions, 3).detach()
    with autocast("bf16", "cuda"):
        mixed = completion_log_probs(policies["bf16"], prompts, completions, 3)
    assert mixed.dtype == torch.float32 and mixed.is_cuda
    grads = torch.autograd.grad((mixed * mask).sum(), trainable)
    assert all(g.dtype == torch.float32 and g.abs().max() > 0 for g in grads)
    assert not torch.equal(mixed.detach()[mask], exact[mask])  # bfloat16 really ran
    layers = policies["bf16"].get_base_model().config.num_hidden_layers
    bound = {"terms": layers, "ulps": 8, "dtype": torch.bfloat16}
    assert_equal_up_to_rounding(mixed.detach()[mask].cpu(), exact[mask].cpu(), **bound,
                                msg="bf16 vs float32 on cuda")  # fmt: skip


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    from pgrpo.models import materialize_model

    folder = tmp_path_factory.mktemp("gpu") / "smollm2-135m"
    materialize_model("smollm2-135m", folder)
    return folder


@pytest.mark.slow
def test_three_bf16_training_steps_of_smollm2_on_one_gpu_with_accelerate(smollm2, tmp_path):
    """tests/train_steps.py launched as the training rule launches it with
    ``launch.accelerate_config: 1gpu``: one process on the GPU, bf16, three P-GRPO steps."""
    from tiny_training import launch_steps

    (report,) = launch_steps("1gpu", smollm2, tmp_path, "--steps", "3", "--precision", "bf16")
    assert (report["world"], report["device"]) == (1, "cuda:0")
    assert report["base_dtypes"] == ["torch.bfloat16"]
    assert len(report["reward_mean"]) == 3
    lora_b = [v for k, v in report["adapter"].items() if "lora_B" in k]
    assert lora_b and any(x != 0 for b in lora_b for x in b)  # B starts at 0: steps were taken
    assert all(math.isfinite(x) for v in report["adapter"].values() for x in v)
    step, peak = report["seconds_per_step"], report["peak_gpu_gb"]
    print(f"SmolLM2 bf16 on {torch.cuda.get_device_name(0)}: {step:.3f} s/step, {peak:.2f} GB")


@pytest.mark.slow
@pytest.mark.skipif(GPUS < 2, reason=f"{GPUS} CUDA device(s): NCCL needs 2 or more")
def test_cluster_statistics_are_gathered_over_nccl(tmp_path):
    """Two GPU processes (``launch.accelerate_config: 2gpu``) hold the statistics of the
    whole global batch, bit for bit the same on both ranks, gathered over NCCL."""
    from tiny_training import launch_steps, tiny_training_inputs

    tiny = tmp_path / "tiny"
    tiny_training_inputs(tiny)
    ranks = launch_steps("2gpu", tiny, tmp_path / "two")
    assert [(r["rank"], r["world"], r["backend"]) for r in ranks] == [
        (0, 2, "nccl"), (1, 2, "nccl"),
    ]  # fmt: skip
    assert [r["device"] for r in ranks] == ["cuda:0", "cuda:1"]
    assert ranks[0]["stats"] == ranks[1]["stats"]
    assert sum(ranks[0]["stats"]["count"]) == 2 * 4 * 4  # 2 steps x 4 prompts x G=4, all ranks
