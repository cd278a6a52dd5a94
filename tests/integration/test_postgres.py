"""The scale-out path on the machine's PostgreSQL server: Dagster, MLflow and Optuna."""

import os
import uuid

import pytest

from tests.conftest import demo_data, materializations, write_spec
from tests.integration.test_tuning import two_workers_finish_exactly_the_plan

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
SERVER = os.environ.get("TIDELINE_TEST_POSTGRES",
                        "postgresql+psycopg2://postgres@127.0.0.1:5432")


@pytest.fixture
def database():
    """A fresh database on the server, dropped afterwards."""
    import psycopg2

    try:
        admin = psycopg2.connect(f"{SERVER}/postgres".replace("+psycopg2", ""),
                                 connect_timeout=5)
    except psycopg2.OperationalError as exc:
        if os.environ.get("TIDELINE_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL at {SERVER} is required here and unreachable: {exc}")
        pytest.skip(f"no PostgreSQL at {SERVER}")
    admin.autocommit = True
    name = f"tideline_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield f"{SERVER}/{name}"
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def test_chain_on_postgres_instance_mlflow_and_optuna(tmp_path, home, monkeypatch, database):
    import dagster as dg
    import psycopg2

    monkeypatch.setenv("TIDELINE_POSTGRES_URL", database)
    data = demo_data(home)
    spec = write_spec(tmp_path / "pg.yaml", "demo", data, tuning__n_trials=2,
                      tuning__search_space__epochs={"low": 5, "high": 8})
    monkeypatch.setenv("TIDELINE_SPEC", str(spec))
    from definitions import build_definitions
    from pipelines.paths import instance_config

    config = instance_config({"telemetry": {"enabled": False}}, database)
    with dg.instance_for_test(overrides=config) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        job = build_definitions().resolve_job_def("breast_cancer_training_job")
        result = job.execute_in_process(instance=instance)
        assert result.success
        meta = materializations(result)
        assert meta["trained_weights"]["trials_complete"] == 2
    with psycopg2.connect(database.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] >= 1
        cur.execute("SELECT count(*) FROM mlflow.model_versions")  # MLflow's registry
        assert cur.fetchone()[0] == 1
        cur.execute("SELECT count(*) FROM optuna.trials")  # Optuna's study storage
        assert cur.fetchone()[0] == 2


def test_two_workers_share_one_study_on_postgres(tmp_path, home, database):
    two_workers_finish_exactly_the_plan(tmp_path, home, database)
