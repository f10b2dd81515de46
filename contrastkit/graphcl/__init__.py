"""Graph contrastive methods."""
