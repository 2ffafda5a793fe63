"""Networks with per-layer dropout slots, datasets and training (built in a later issue)."""
