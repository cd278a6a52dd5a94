"""The ML of Tideline as plain functions: no Dagster in this package."""
