"""jrl_core."""
