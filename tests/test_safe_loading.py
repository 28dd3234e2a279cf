"""Nothing loaded runs code the user did not allow: weights only from safetensors (a pickled
``.bin`` checkpoint can execute anything when unpickled), custom model code only with
``model.trust_remote_code: true``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pgrpo.io import PgrpoError
from pgrpo.models import LoraSettings, add_lora, load_adapter, load_base_model, materialize_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "model"
    materialize_model("tiny", folder)
    return folder


def pickled_copy(tiny: Path, dest: Path) -> Path:
    """The tiny model saved the old way: pytorch_model.bin (pickle), no safetensors."""
    shutil.copytree(tiny, dest)
    weights = dest / "model.safetensors"
    torch.save(load_file(weights), dest / "pytorch_model.bin")
    weights.unlink()
    assert (dest / "pytorch_model.bin").is_file() and not list(dest.glob("*.safetensors"))
    return dest


def materialize(name: str, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pgrpo.materialize", "--config", str(REPO / "config.yaml"),
           "--name", name, "--out", str(out)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_pickled_base_model_weights_are_refused(tiny, tmp_path):
    folder = pickled_copy(tiny, tmp_path / "pickled")
    with pytest.raises(PgrpoError, match=r"no safetensors weights \(pickled .bin files"):
        load_base_model(folder)


@pytest.mark.slow
def test_materialising_a_pickled_model_fails_in_one_line_and_writes_nothing(tiny, tmp_path):
    folder = pickled_copy(tiny, tmp_path / "pickled")
    out = tmp_path / "out"
    done = materialize(str(folder), out)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: model.name: {str(folder)!r}: no safetensors weights (pickled .bin files are "
        "not loaded)"
    ]
    assert not out.exists()


def test_an_adapter_without_safetensors_is_refused(tiny, tmp_path):
    policy = add_lora(load_base_model(tiny), LoraSettings(r=4, alpha=8))
    policy.save_pretrained(tmp_path / "adapter")
    weights = tmp_path / "adapter/adapter_model.safetensors"
    torch.save(load_file(weights), tmp_path / "adapter/adapter_model.bin")  # the pickled form
    weights.unlink()
    with pytest.raises(PgrpoError, match="no adapter_model.safetensors"):
        load_adapter(load_base_model(tiny), tmp_path / "adapter")


@pytest.mark.slow
def test_custom_model_code_does_not_run_unless_trusted(tiny, tmp_path):
    folder = tmp_path / "custom"
    shutil.copytree(tiny, folder)
    marker = tmp_path / "custom-code-ran"
    # Importing this module is what trust_remote_code would allow: it leaves a marker.
    (folder / "custom_llama.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'pgrpo-custom'\n"
        "class CustomModel(LlamaForCausalLM):\n    config_class = CustomConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "pgrpo-custom"  # no built-in class: only the folder's code loads it
    config["auto_map"] = {"AutoConfig": "custom_llama.CustomConfig",
                          "AutoModelForCausalLM": "custom_llama.CustomModel"}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    done = materialize(str(folder), out)
    assert done.returncode == 2, done.stderr[-2000:]
    # (transformers may log a warning about the unknown model type before it)
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: model.name: {str(folder)!r} needs its own code; set "
        "model.trust_remote_code: true only if you trust its source"
    )
    assert done.stderr.count("error:") == 1 and "Traceback" not in done.stderr
    assert not marker.exists() and not out.exists()
