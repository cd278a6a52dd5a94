"""raw_source: the observed source file (a local file, or an object in lakeFS)."""

import dagster as dg

from assets.naming import key
from pipelines.ingest import InputError, local_source_path
from pipelines.spec import DatasetSpec
from resources.store import ArtifactStoreResource, LakeFSResource


def build_raw_source(spec: DatasetSpec) -> dg.SourceAsset:
    @dg.observable_source_asset(
        key=key(spec, "raw_source"), group_name=spec.name,
        description=f"{spec.name}'s source ({spec.source.path}). A local file's data version "
                    "is its content hash, cached by (path, size, mtime, inode) so an unchanged "
                    "file is never re-read; a lakefs:// source's is the commit its ref points "
                    "at plus the object's checksum, read from lakeFS metadata alone.",
    )
    def raw_source(context, store: ArtifactStoreResource,
                   lakefs: LakeFSResource) -> dg.ObserveResult:
        from pipelines.lakefs import is_lakefs

        source = spec.source.path
        if is_lakefs(source):
            version = lakefs.source_version(source)
            return dg.ObserveResult(
                data_version=dg.DataVersion(version.data_version),
                metadata={"model": spec.name, "source": source,
                          "commit_id": version.commit_id, "checksum": version.checksum,
                          "bytes": version.size_bytes, "pinned": version.pinned_uri})
        try:
            # A missing, directory or unreadable path fails here with its one line, which
            # the UI shows as the step's message (not a stack trace from hashing).
            path = local_source_path(source)
            content_hash, cached = store.stat_cache().file_hash(path)
        except InputError as exc:
            raise dg.Failure(description=str(exc)) from None
        return dg.ObserveResult(
            data_version=dg.DataVersion(content_hash),
            metadata={"model": spec.name, "path": dg.MetadataValue.path(str(path)),
                      "bytes": path.stat().st_size, "content_hash": content_hash,
                      "stat_cache": "hit" if cached else "miss"},
        )

    return raw_source
