"""Layer 8, the tiny model zoo: its invented world and tasks, its CPU training, and the build that registers `zoo/...` models and `zoo_*` tasks as a provider."""
