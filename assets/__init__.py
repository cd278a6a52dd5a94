"""Dagster assets: thin wrappers around `pipelines`, one module per stage."""
