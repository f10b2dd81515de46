"""Real benchmark datasets."""
