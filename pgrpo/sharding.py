"""Sharded training (PyTorch FSDP2, ``fully_shard``) for models one GPU cannot hold.

Data-parallel training (the default) keeps the whole model on every process and averages the
adapter's gradients (:meth:`pgrpo.trainer.Trainer._average_gradients`). Sharded training
splits every parameter (frozen base weights and LoRA matrices alike) across the processes:
each decoder layer is one FSDP unit, gathered for its forward and backward and freed after,
and gradients are reduce-scattered (averaged) by FSDP itself. A process then holds
1/``processes`` of the weights, gradients and AdamW state.

It is chosen by ``launch.accelerate_config: 8gpu_fsdp`` (an accelerate file whose
``distributed_type`` is FSDP: ``accelerate launch`` exports its ``fsdp_config`` as FSDP_*
variables, of which the layer class to wrap and ``fsdp_reshard_after_forward`` are read here)
or by ``launch.sharding: fsdp``. pgrpo shards the model itself instead of handing it to
``accelerator.prepare``: the same code then runs on CUDA (NCCL) and as CPU processes (gloo),
which is how CI tests it.

Checkpoints and the saved adapter hold full (gathered) tensors, so a sharded run's files are
the same as a data-parallel run's; gathering is collective: every process calls
:func:`full_trainable_state` and :func:`full_optimizer_state`.
"""

from __future__ import annotations

import os

import torch
from torch.distributed.tensor import DTensor, distribute_tensor

from pgrpo.models import base_model


def launched_with_fsdp() -> bool:
    """Whether ``accelerate launch`` ran an FSDP config file (it exports ACCELERATE_USE_FSDP
    and the file's fsdp_config as FSDP_* variables, on GPUs and under launch.cpu_fallback)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def wants_sharding(accelerator, sharding: str | None) -> bool:
    """Whether to shard: ``launch.sharding: fsdp`` or an FSDP accelerate file; more than one
    process either way (one process has nothing to shard across)."""
    asked = sharding == "fsdp" or launched_with_fsdp()
    return asked and accelerator.num_processes > 1


def layer_classes(model) -> set[type]:
    """The module classes that become one FSDP unit each: the accelerate file's
    ``fsdp_transformer_layer_cls_to_wrap`` when given, else the model's
    ``_no_split_modules`` (its decoder layer, e.g. LlamaDecoderLayer)."""
    names = {n for n in os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "").split(",") if n}
    if not names:
        names = set(getattr(base_model(model), "_no_split_modules", None) or [])
    classes = {type(m) for m in model.modules() if type(m).__name__ in names}
    if not classes:
        raise ValueError(f"sharding: no module of class {sorted(names)} in the model")
    return classes


def shard(model, accelerator) -> torch.nn.Module:
    """Apply FSDP2 in place: one unit per decoder layer, then the root (embeddings, final
    norm, head). Parameters move to ``accelerator.device`` as they are sharded, so a process
    never holds more than its shards plus one layer on the device."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() != "false"
    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    for module in [m for m in model.modules() if type(m) in layer_classes(model)]:
        fully_shard(module, mesh=mesh, reshard_after_forward=reshard)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard)
    return model


def broadcast_trainable(model, accelerator) -> None:
    """Give every process rank 0's trainable parameters (the fresh LoRA matrices), as DDP does
    when it wraps a model: each process seeds its RNG with seed + rank, so each would
    otherwise start from its own adapter and data-parallel processes would drift apart."""
    if accelerator.num_processes == 1:
        return
    from accelerate.utils import broadcast

    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                synced = broadcast(p.detach().to(accelerator.device), from_process=0)
                p.copy_(synced.to(p.device))


def full_trainable_state(model) -> dict[str, torch.Tensor]:
    """{name: full tensor on the CPU} of the trainable parameters (the adapter); collective
    when the model is sharded."""
    state = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            value = p.full_tensor() if isinstance(p, DTensor) else p
            state[name] = value.detach().to("cpu", copy=True)
    return state


def load_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    """Copy full tensors (from :func:`full_trainable_state`) into the parameters, each
    process keeping its own shard."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            p = params[name]
            if isinstance(p, DTensor):
                local = distribute_tensor(value.to(p.device, p.dtype), p.device_mesh, p.placements)
                p.to_local().copy_(local.to_local())
            else:
                p.copy_(value)


def _options(**kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def full_optimizer_state(model, optimizer) -> dict:
    """The optimiser's state with full tensors, keyed by parameter name (collective)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))


def load_optimizer_state(model, optimizer, state: dict) -> None:
    """Restore :func:`full_optimizer_state` (every process passes the same full state)."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=_options())
