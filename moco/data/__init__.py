"""Layer 1, data: the 45 MoCo benchmarks as `Task`s, pinned fetching, and bring-your-own data."""
