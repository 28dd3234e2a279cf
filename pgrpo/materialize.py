"""Entry point: write the base model once as a safetensors checkpoint with its tokenizer.

python -m pgrpo.materialize --config config.yaml [--name NAME] --out resources/models/smollm2-135m

``--name`` materialises another model than the config's ``model.name`` (one of
``model.compare``), with the config's ``model.trust_remote_code``.
"""

from __future__ import annotations

import argparse

from pgrpo.config import load_config
from pgrpo.io import run_cli
from pgrpo.models import materialize_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Materialise the base model checkpoint.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--name", help="model name (default: the config's model.name)")
    parser.add_argument("--out", required=True, help="output model folder")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    model = config["model"]
    name = args.name or model["name"]
    materialize_model(name, args.out, config["seed"], model["trust_remote_code"])
    print(f"{name} written to {args.out}")


if __name__ == "__main__":
    run_cli(main)
