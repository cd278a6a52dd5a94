"""Dagster resources: the artifact store, the dataset spec, MLflow and the ref IO manager."""
