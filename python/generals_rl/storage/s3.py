"""S3 (or any S3-compatible server via ``endpoint_url``) as a destination.

Shards are encoded into a local spool file, then uploaded (multipart above
``multipart_threshold``) to ``<prefix>/year=YYYY/month=MM/day=DD/hour=HH/
game_<id>_<nnnn>.<ext>``; the partition's ``_index.json`` is rewritten only after
the upload succeeded, so readers going by the index never see a partial shard.
Every request is retried with exponential backoff (botocore's standard mode, up to
``max_attempts``), and the writer retries a failed commit later again. Credentials
come from the standard boto3 chain (environment, shared config, instance roles).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import tempfile
from urllib.parse import urlparse

from ._options import format_and_writer_options
from .errors import StorageError
from .formats import format_for
from .shard_writer import ShardWriter
from .store import Staging, Store


def _boto3():
    try:
        import boto3
        import botocore
    except ImportError:
        raise ImportError("S3 storage needs boto3: pip install 'generals-rl[storage]'") from None
    return boto3, botocore


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without surrounding slashes) of ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"destination: expected s3://bucket/prefix, got {url!r}")
    return parsed.netloc, parsed.path.strip("/")


class _SpoolStaging(Staging):
    def __init__(self, directory: str) -> None:
        fd, self.path = tempfile.mkstemp(prefix=".generals-rl-shard-", dir=directory)
        self.file = os.fdopen(fd, "wb", buffering=0)  # unbuffered, see ChecksumWriter.drain

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class S3Store(Store):
    """Objects under ``s3://bucket/prefix``."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        client=None,
        region_name: str | None = None,
        spool_dir: str | None = None,
        multipart_threshold: int = 64 * 1024 * 1024,
        multipart_chunksize: int = 16 * 1024 * 1024,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        boto3, botocore = _boto3()
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        if int(max_attempts) < 1:
            raise ValueError(f"max_attempts: must be at least 1, got {max_attempts}")
        if int(multipart_chunksize) < 5 * 1024 * 1024:
            raise ValueError(
                f"multipart_chunksize: S3 parts are at least 5 MiB, got {multipart_chunksize}"
            )
        self._errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
        self._client_error = botocore.exceptions.ClientError
        self.client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region_name,
            config=Config(
                retries={"max_attempts": int(max_attempts), "mode": "standard"},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            ),
        )
        self.transfer = TransferConfig(
            multipart_threshold=int(multipart_threshold),
            multipart_chunksize=int(multipart_chunksize),
            use_threads=False,
        )
        self.spool_dir = spool_dir or tempfile.gettempdir()
        if not os.path.isdir(self.spool_dir):
            raise ValueError(f"spool_dir: {self.spool_dir} is not a directory")

    def _key(self, path: str) -> str:
        if not path:
            return self.prefix
        return f"{self.prefix}/{path}" if self.prefix else path

    def _fail(self, action: str, path: str, exc: Exception) -> StorageError:
        return StorageError(f"{action} s3://{self.bucket}/{self._key(path)}: {exc}")

    def list_dir(self, path: str) -> tuple[list[str], list[str]]:
        prefix = self._key(path)
        prefix = f"{prefix}/" if prefix else ""
        dirs, files = [], []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                dirs += [
                    p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])
                ]
                files += [o["Key"][len(prefix) :] for o in page.get("Contents", [])]
        except self._errors as exc:
            raise self._fail("listing", path, exc) from exc
        return dirs, files

    def read_bytes(self, path: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(path))["Body"].read()
        except self._client_error as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"s3://{self.bucket}/{self._key(path)}") from None
            raise self._fail("reading", path, exc) from exc
        except self._errors as exc:
            raise self._fail("reading", path, exc) from exc

    def put_bytes(self, path: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(path), Body=data)
        except self._errors as exc:
            raise self._fail("writing", path, exc) from exc

    def stage(self, path: str) -> Staging:
        return _SpoolStaging(self.spool_dir)

    def publish(self, staging: Staging, path: str, checksum: str, metadata: dict) -> None:
        assert isinstance(staging, _SpoolStaging)
        if not staging.file.closed:
            staging.file.close()
        meta = {k: str(v) for k, v in metadata.items()}
        meta["checksum"] = checksum
        try:
            self.client.upload_file(
                staging.path,
                self.bucket,
                self._key(path),
                ExtraArgs={"Metadata": meta},
                Config=self.transfer,
            )
        except Exception as exc:  # boto3 wraps failures in S3UploadFailedError
            raise self._fail("uploading", path, exc) from exc
        staging.discard()

    def remove_leftovers(self, partition: str) -> int:
        """Aborts multipart uploads a crashed writer left under ``partition``."""
        removed = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self._key(partition) + "/"
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
        except self._errors as exc:
            raise self._fail("cleaning up", partition, exc) from exc
        return removed

    def check_bucket(self) -> None:
        """StorageError unless the bucket exists and is reachable."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._errors as exc:
            raise StorageError(f"bucket s3://{self.bucket} is not reachable: {exc}") from exc


_STORE_OPTIONS = tuple(
    p for p in inspect.signature(S3Store.__init__).parameters if p not in ("self", "url")
)


class S3Writer(ShardWriter):
    """Shards of ``format`` ("parquet", "tfrecord" or "npz", with that format's
    options) under ``s3://bucket/prefix``. S3 options: ``endpoint_url``, ``client``
    (a boto3 S3 client to use), ``region_name``, ``spool_dir`` (local staging),
    ``multipart_threshold``, ``multipart_chunksize``, ``max_attempts``; rotation,
    retry and resume options as for ``ShardWriter``."""

    def __init__(self, url: str, *, format: str = "parquet", **options) -> None:
        store_options = {k: options.pop(k) for k in list(options) if k in _STORE_OPTIONS}
        shard_format, writer_options = format_and_writer_options(format_for(format), options)
        store = S3Store(url, **store_options)
        store.check_bucket()
        super().__init__(store, shard_format, **writer_options)
