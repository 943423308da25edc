"""Layer 3, serving: GPU placement, the generation cache and cost ledger, the model pool, the Ray executor."""
