"""Sensors: production changes → monitoring runs; drift or poor performance → retraining."""
