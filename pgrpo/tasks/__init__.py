"""Tasks: prompts and rewards, one class per task with the same interface."""
