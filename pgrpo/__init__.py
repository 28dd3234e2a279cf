"""pgrpo: Personalized Group Relative Policy Optimization (P-GRPO), a reproducible pipeline."""

__version__ = "0.1.0"
