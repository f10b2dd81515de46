"""contrastkit: contrastive representation learning on graphs, sequences and images."""

__version__ = "0.1.0"
