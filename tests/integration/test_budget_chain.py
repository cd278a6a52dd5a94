"""The memory budget changes how the chain holds its data, never what it produces.

The whole training chain runs twice on the same data in two fresh states: once with a
1 MB budget (every stage reads, validates, encodes and scores 64 rows at a time, training
reads its rows from memory-mapped files) and once with the machine's default (one batch
per stage). Every stage's content hash, and so the recipe key of every stage after it,
must be the same.
"""

import pytest

from tests.conftest import CHAIN, fast_adult_spec, materializations

pytestmark = pytest.mark.slow


def test_a_tiny_budget_gives_every_stage_the_same_content_hash(tmp_path, adult_sample,
                                                                 chain_factory):
    results = {}
    for budget in ("1MB", None):
        folder = tmp_path / (budget or "default")
        folder.mkdir()
        extra = {"resources__memory_budget": budget} if budget else {}
        spec = fast_adult_spec(folder, adult_sample, training__epochs=2, **extra)
        run = chain_factory(spec, state=folder / "state").run()
        assert run.success, budget
        results[budget] = materializations(run)
    tiny, default = results["1MB"], results[None]
    assert [tiny[a]["cache"] for a in CHAIN] == ["miss"] * len(CHAIN)
    assert {a: tiny[a]["content_hash"] for a in CHAIN} == {
        a: default[a]["content_hash"] for a in CHAIN}
    assert {a: tiny[a]["recipe_key"] for a in CHAIN} == {
        a: default[a]["recipe_key"] for a in CHAIN}
