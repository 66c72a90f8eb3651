"""One AWS Deadline Cloud job-attachment submit of a folder, timed: run by bench/upload.py in the
bench-only Deadline venv (the `deadline` package is not a dependency of the add-on).

It does what Deadline's submitters do through the package's public API: group the input files
by root (`S3AssetManager.prepare_paths_for_upload`), hash them into a manifest through its local
hash cache (`hash_assets_and_create_manifest`), then upload what the bucket lacks and the
manifest (`upload_assets`, with its S3 check cache). The queue's job-attachment settings
(bucket + root prefix) are given directly, so no Deadline farm or queue is called. The endpoint
comes from AWS_ENDPOINT_URL in the environment (boto3 reads it). Standard library and
`deadline` only: this file runs in that venv, not in the dev venv.

    python attachments.py FOLDER BUCKET ROOT_PREFIX CACHE_DIR

Prints one line of JSON: seconds for hashing and uploading, files hashed / skipped by the hash
cache, files uploaded / skipped, peak memory of this process.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import boto3
from deadline.job_attachments.models import JobAttachmentS3Settings
from deadline.job_attachments.upload import S3AssetManager


def main() -> None:
    folder, bucket, root_prefix, cache_dir = sys.argv[1:5]
    files = sorted(str(p) for p in Path(folder).rglob("*") if p.is_file())
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    manager = S3AssetManager(
        farm_id="farm-bench",
        queue_id="queue-bench",
        job_attachment_settings=JobAttachmentS3Settings(s3BucketName=bucket, rootPrefix=root_prefix),
        session=boto3.Session(region_name="us-east-1"),
    )
    start = time.perf_counter()
    group = manager.prepare_paths_for_upload(input_paths=files, output_paths=[], referenced_paths=[])
    hashing, manifests = manager.hash_assets_and_create_manifest(
        group.asset_groups, group.total_input_files, group.total_input_bytes, hash_cache_dir=cache_dir
    )
    hashed_s = time.perf_counter() - start
    uploading, _attachments = manager.upload_assets(
        manifests, s3_check_cache_dir=cache_dir, manifest_write_dir=cache_dir
    )
    total_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": total_s,
                "hash_seconds": hashed_s,
                "files": group.total_input_files,
                "bytes": group.total_input_bytes,
                "hashed_files": hashing.processed_files,
                "hash_cache_hits": hashing.skipped_files,
                "uploaded_files": uploading.processed_files,
                "uploaded_bytes": uploading.processed_bytes,
                "upload_skipped_files": uploading.skipped_files,
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
