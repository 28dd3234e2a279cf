"""Training seeds (a count from ``seed`` or a list) and the profiles' configs, which the
workflow merges over config.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pgrpo.config import deep_update, load_config, training_seeds, validate_config
from pgrpo.io import PgrpoError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["baselines", "confirm"])
def test_profile_configs_validate_over_the_default(profile):
    """A profile's configfile is merged over config.yaml, as Snakemake merges it."""
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    extra = yaml.safe_load((REPO / f"profiles/{profile}/{profile}.yaml").read_text("utf-8"))
    deep_update(config, extra)
    validate_config(config, f"profiles/{profile}/{profile}.yaml")


def test_training_seeds_are_a_count_from_seed_or_a_list():
    assert training_seeds(validate_config({"seed": 5, "seeds": 3})) == [5, 6, 7]
    assert training_seeds(validate_config({"seed": 0, "seeds": [3, 4, 7]})) == [3, 4, 7]
    assert training_seeds(load_config(REPO / "profiles/confirm/confirm.yaml")) == [3, 4, 5, 6, 7]
    assert not set(training_seeds(load_config(REPO / "config.yaml"))) & {3, 4, 5, 6, 7}


@pytest.mark.parametrize(
    ("seeds", "words"),
    [([], "non-empty"), ([3, 3], "non-unique"), ([-1], "minimum"), (0, "minimum"),
     (["3"], "integer")],
)  # fmt: skip
def test_bad_seeds_are_refused_naming_the_key(seeds, words):
    with pytest.raises(PgrpoError) as info:
        validate_config({"seeds": seeds}, "cfg.yaml")
    message = str(info.value)
    assert message.startswith("cfg.yaml: ") and "\n" not in message, message
    assert "seeds" in message and words in message, message
