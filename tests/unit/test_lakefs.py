"""lakeFS through the official SDK: source versions, pinned reads, commits, tags, revert.

Runs against a real lakeFS server when LAKEFS_ENDPOINT is set, else against the stand-in
in tests/lakefs_standin.py (fixture `lakefs` in conftest.py); the tests are the same.
"""

import hashlib
import io

import lakefs as lakefs_sdk
import pytest

from pipelines.lakefs import (
    LakeFSError,
    LakeFSPath,
    commit_store,
    copy_source,
    source_version,
    tag_deployment,
)
from pipelines.store import ArtifactStore

CSV = b"age,income\n39,<=50K\n50,>50K\n"


@pytest.fixture
def repo(lakefs):
    return lakefs.new_repo()


def put(client, repo, branch, path, data, message):
    b = lakefs_sdk.Branch(repo, branch, client=client)
    b.object(path).upload(data, mode="wb", pre_sign=False)
    return b.commit(message).id


def test_uri_parsing():
    assert LakeFSPath.parse("lakefs://r/main/data/a.csv") == LakeFSPath("r", "main", "data/a.csv")
    assert LakeFSPath.parse("lakefs://r/main").path == ""
    for bad in ("s3://r/main/a", "lakefs://r", "lakefs:///main/a"):
        with pytest.raises(LakeFSError):
            LakeFSPath.parse(bad)


def test_source_version_is_commit_and_checksum_without_reading_data(lakefs, repo):
    client = lakefs.client()
    commit = put(client, repo, "main", "data/adult.csv", CSV, "add data")
    reads = lakefs.standin.object_reads() if lakefs.standin else None
    v = source_version(client, f"lakefs://{repo}/main/data/adult.csv")
    assert v.commit_id == commit and v.size_bytes == len(CSV)
    assert v.checksum == hashlib.md5(CSV, usedforsecurity=False).hexdigest()
    assert v.data_version == f"{commit}:{v.checksum}"
    assert v.pinned_uri == f"lakefs://{repo}/{commit}/data/adult.csv"
    if lakefs.standin:
        assert lakefs.standin.object_reads() == reads, "detecting a version read no data"

    # A commit that leaves the object alone: new data version, same content key.
    other = put(client, repo, "main", "docs/readme.txt", b"notes", "docs")
    v2 = source_version(client, f"lakefs://{repo}/main/data/adult.csv")
    assert v2.commit_id == other and v2.data_version != v.data_version
    assert v2.content_key == v.content_key

    # Changed bytes: new checksum, new content key.
    put(client, repo, "main", "data/adult.csv", CSV + b"28,<=50K\n", "more rows")
    v3 = source_version(client, f"lakefs://{repo}/main/data/adult.csv")
    assert v3.checksum != v.checksum and v3.content_key != v.content_key

    # Uncommitted changes on the branch are not part of any version.
    lakefs_sdk.Branch(repo, "main", client=client).object("data/adult.csv").upload(
        b"age,income\n", mode="wb", pre_sign=False)
    assert source_version(client, f"lakefs://{repo}/main/data/adult.csv") == v3


def test_pinned_read_returns_the_versions_bytes_after_the_branch_moved(lakefs, repo):
    client = lakefs.client()
    put(client, repo, "main", "data/adult.csv", CSV, "v1")
    v1 = source_version(client, f"lakefs://{repo}/main/data/adult.csv")
    put(client, repo, "main", "data/adult.csv", CSV * 3, "v2")
    out = io.BytesIO()
    assert copy_source(client, v1, out) == len(CSV)
    assert out.getvalue() == CSV


def test_a_read_that_disagrees_with_the_checksum_fails(lakefs, repo):
    client = lakefs.client()
    put(client, repo, "main", "data/adult.csv", CSV, "v1")
    v = source_version(client, f"lakefs://{repo}/main/data/adult.csv")
    forged = type(v)(v.location, v.commit_id, "0" * 32, v.size_bytes)
    with pytest.raises(LakeFSError, match="checksum"):
        copy_source(client, forged, io.BytesIO())


def test_missing_repository_ref_or_object_names_what_is_missing(lakefs, repo):
    client = lakefs.client()
    put(client, repo, "main", "data/adult.csv", CSV, "v1")
    with pytest.raises(LakeFSError, match="no-such-repo"):
        source_version(client, "lakefs://no-such-repo/main/data/adult.csv")
    with pytest.raises(LakeFSError, match="no-such-branch"):
        source_version(client, f"lakefs://{repo}/no-such-branch/data/adult.csv")
    with pytest.raises(LakeFSError, match="data/missing.csv"):
        source_version(client, f"lakefs://{repo}/main/data/missing.csv")


def test_store_commits_tags_and_reverts(lakefs, repo):
    client = lakefs.client()
    root = f"lakefs://{repo}/main/store"
    store = ArtifactStore(root)
    assert commit_store(root, "nothing yet") is None, "an empty staging area is no commit"

    first = store.put_bytes(b"model v1")
    store.write_record("deployments/m/head", {"stable": 1})
    c1 = commit_store(root, "run 1", {"dagster_run_id": "r1"})
    commit = lakefs_sdk.Reference(repo, c1, client=client).get_commit()
    assert commit.message == "run 1" and commit.metadata["dagster_run_id"] == "r1"

    tag = tag_deployment(root, "m", 1)
    assert tag == {"tag": "m-v1", "commit": c1, "created": "yes"}, "nothing new: tag run 1"
    assert lakefs_sdk.Tag(repo, "m-v1", client=client).get_commit().id == c1
    assert tag_deployment(root, "m", 1)["created"] == "no", "a redeploy keeps its tag"

    second = store.put_bytes(b"model v2")
    store.write_record("deployments/m/head", {"stable": 2})
    c2 = commit_store(root, "run 2")
    assert c2 and c2 != c1

    # Rolling the store back is a lakeFS revert of the run's commit.
    lakefs_sdk.Branch(repo, "main", client=client).revert(c2)
    store = ArtifactStore(root)
    assert store.read_record("deployments/m/head") == {"stable": 1}
    assert store.has(first) and not store.has(second)
    assert ArtifactStore(f"lakefs://{repo}/m-v1/store").get_bytes(first) == b"model v1"


def test_connection_errors_say_what_to_set(lakefs, monkeypatch):
    from pipelines.lakefs import make_client

    monkeypatch.delenv("LAKEFS_SECRET_ACCESS_KEY")
    with pytest.raises(LakeFSError, match="LAKEFS_SECRET_ACCESS_KEY"):
        make_client()
    for var in ("LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("LAKECTL_CONFIG_FILE", "/nonexistent/lakectl.yaml")
    with pytest.raises(LakeFSError, match="LAKEFS_ENDPOINT"):
        make_client()
    wrong = make_client(lakefs.endpoint, lakefs.access_key_id, "not-the-secret")
    with pytest.raises(Exception, match="(?i)auth"):
        source_version(wrong, "lakefs://any-repo/main/data.csv")
