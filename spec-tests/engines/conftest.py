"""The engine tests' fixtures live in engine_env.py (a module name no other suite uses)."""

from engine_env import ctr_env, podman_env, runtime  # noqa: F401
