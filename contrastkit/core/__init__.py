"""Shared core: loss engine, probes and metrics, the trainer."""
