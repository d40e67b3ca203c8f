"""The bottom layer: small helpers every package may use (no cellzoo imports)."""
