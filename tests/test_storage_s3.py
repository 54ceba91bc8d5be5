"""S3 storage against a real S3-compatible HTTP server (moto in server mode, on
127.0.0.1), read back with boto3 and pyarrow; retries, multipart uploads, recovery
and redundancy over several destinations."""

from __future__ import annotations

import io
import json

import boto3
import botocore.exceptions
import google_crc32c
import numpy as np
import pyarrow.parquet as pq
import pytest
from generals_rl.experience import RawBatch
from generals_rl.storage import (
    MultiWriter,
    ParquetWriter,
    S3Writer,
    StorageError,
    open_dataset,
    open_writer,
)
from storage_support import (
    SHARD_KEY,
    TABLES,
    assert_same_decoded,
    assert_same_raw,
    joined,
    moto_s3,
    played,
)

moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def endpoint():
    with moto_s3() as url:
        yield url


@pytest.fixture
def bucket(endpoint, request):
    client = boto3.client("s3", endpoint_url=endpoint)
    name = "grl-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    client.create_bucket(Bucket=name)
    return client, name


def listed(client, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def get(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def raw_from_parquet_bytes(data: bytes) -> RawBatch:
    table = pq.read_table(io.BytesIO(data))
    meta = json.loads(table.schema.metadata[b"generals_rl"])
    columns = {
        name: table.column(name).to_numpy() for name in table.column_names if name not in TABLES
    }
    tables = {}
    for name in TABLES:
        dtype = np.dtype(table.schema.field(name).metadata[b"dtype"].decode())
        boards = table.column(name).combine_chunks().flatten().to_pylist()
        tables[name] = np.frombuffer(b"".join(boards), dtype=dtype).reshape(
            -1, meta["height"], meta["width"]
        )
    return RawBatch(**columns, **tables)


def test_parquet_on_s3_layout_index_and_contents(bucket, endpoint):
    client, name = bucket
    batches = played()
    expected = joined(batches)
    with S3Writer(
        f"s3://{name}/runs/a", format="parquet", endpoint_url=endpoint, max_experiences=2500
    ) as writer:
        for batch in batches:
            writer.write(batch)
    keys = listed(client, name, "runs/a/")
    shards = [k for k in keys if not k.endswith("_index.json")]
    indexes = [k for k in keys if k.endswith("_index.json")]
    assert len(shards) == -(-len(expected) // 2500)
    entries = []
    for index_key in indexes:
        partition = index_key[len("runs/a/") : -len("/_index.json")]
        body = json.loads(get(client, name, index_key))
        assert body["partition"] == partition
        entries += body["shards"]
    entries.sort(key=lambda e: e["sequence_first"])
    assert sorted("runs/a/" + e["key"] for e in entries) == shards
    parts = []
    for entry in entries:
        match = SHARD_KEY.match(entry["key"])
        assert match and match[7] == "parquet"
        data = get(client, name, "runs/a/" + entry["key"])
        assert entry["bytes"] == len(data)
        assert entry["checksum"] == f"crc32c:{google_crc32c.value(data):08x}"
        assert entry["format"] == "parquet" and entry["experiences"] > 0
        head = client.head_object(Bucket=name, Key="runs/a/" + entry["key"])
        assert head["Metadata"]["sequence_last"] == str(entry["sequence_last"])
        part = raw_from_parquet_bytes(data)
        assert part.game_id[0] == int(match[5], 16)
        assert (int(part.sequence[0]), int(part.sequence[-1])) == (
            entry["sequence_first"],
            entry["sequence_last"],
        )
        parts.append(part)
    assert_same_raw(joined(parts), expected)
    # open_dataset over S3, decoded, with filters.
    url = f"s3://{name}/runs/a"
    assert_same_decoded(
        open_dataset(url, endpoint_url=endpoint, form="decoded").read(), expected.decode()
    )
    rows = expected.player_id == 0
    assert_same_raw(
        open_dataset(url, endpoint_url=endpoint, player_ids=0).read(), expected.select(rows)
    )


def test_tfrecord_multipart_upload_and_npz(bucket, endpoint):
    client, name = bucket
    batches = played()
    expected = joined(batches)
    # TFRecord bytes records are ~6 KB each: 2000 of them make a 12 MB multipart upload.
    writer = open_writer(
        "tfrecord",
        f"s3://{name}/tf",
        endpoint_url=endpoint,
        max_experiences=2000,
        multipart_threshold=5 * 1024 * 1024,
        multipart_chunksize=5 * 1024 * 1024,
    )
    with writer:
        for batch in batches:
            writer.write(batch)
    shards = [k for k in listed(client, name, "tf/") if k.endswith(".tfrecord")]
    head = client.head_object(Bucket=name, Key=shards[0])
    assert head["ContentLength"] > 10 * 1024 * 1024
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert all(k + ".index" in listed(client, name, "tf/") for k in shards)
    assert_same_raw(open_dataset(f"s3://{name}/tf", endpoint_url=endpoint).read(), expected)

    with open_writer("npz", f"s3://{name}/npz", endpoint_url=endpoint, compressed=True) as writer:
        for batch in batches[:5]:
            writer.write(batch)
    (key,) = [k for k in listed(client, name, "npz/") if k.endswith(".npz")]
    with np.load(io.BytesIO(get(client, name, key))) as arrays:
        got = RawBatch(**{k: arrays[k] for k in arrays.files if k != "_meta"})
    assert_same_raw(got, joined(batches[:5]))


class FlakyPuts:
    """Fails the next ``count`` PutObject requests of a client as a dropped
    connection would."""

    def __init__(self, client, count: int) -> None:
        self.count = count
        self.failed = 0
        client.meta.events.register("before-send.s3.PutObject", self)

    def __call__(self, request, **kwargs):
        if self.count > 0:
            self.count -= 1
            self.failed += 1
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=request.url)


def s3_client(endpoint: str, attempts: int):
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(retries={"max_attempts": attempts, "mode": "standard"}),
    )


def test_failed_uploads_are_retried_with_backoff(bucket, endpoint):
    _client, name = bucket
    batches = played()[:6]
    # botocore retries a dropped connection by itself...
    flaky_client = s3_client(endpoint, attempts=4)
    flaky = FlakyPuts(flaky_client, 2)
    with S3Writer(f"s3://{name}/a", client=flaky_client) as writer:
        for batch in batches:
            writer.write(batch)
    assert flaky.failed == 2 and writer.stats()["commit_failures"] == 0
    # ...and when it gives up, the writer keeps the shard and tries again later.
    single = s3_client(endpoint, attempts=1)
    flaky = FlakyPuts(single, 3)
    writer = S3Writer(f"s3://{name}/b", client=single, max_experiences=300, retry_base_delay=0.01)
    for batch in batches:
        writer.write(batch)
    writer.close()
    stats = writer.stats()
    assert (
        flaky.failed == 3
        and stats["commit_failures"] >= 1
        and "Connection was closed" in stats["last_error"]
    )
    assert stats["shards_pending"] == 0
    assert_same_raw(open_dataset(f"s3://{name}/b", endpoint_url=endpoint).read(), joined(batches))


def test_writer_gives_up_after_its_attempts(bucket, endpoint):
    _client, name = bucket
    single = s3_client(endpoint, attempts=1)
    FlakyPuts(single, 100)
    writer = S3Writer(f"s3://{name}/c", client=single, retry_attempts=2, retry_base_delay=0.01)
    writer.write(played()[0])
    with pytest.raises(StorageError, match="after 2 attempts"):
        writer.flush()
    assert writer.durable_sequence is None


def test_restart_adopts_an_uploaded_shard_missing_from_the_index(bucket, endpoint):
    """A crash between the upload and the index update leaves a complete object the
    index does not list; the next writer indexes it and resumes after it."""
    _client, name = bucket
    batches = played()[:6]
    first = S3Writer(f"s3://{name}/r", endpoint_url=endpoint, retry_attempts=1)
    for batch in batches[:3]:
        first.write(batch)
    first.flush()
    for batch in batches[3:5]:
        first.write(batch)

    def crash(*_):
        raise OSError("crashed before the index update")

    first.store.write_index = crash  # the shard is uploaded, its index entry never written
    with pytest.raises(StorageError, match="crashed"):
        first.flush()
    assert len(open_dataset(f"s3://{name}/r", endpoint_url=endpoint).read()) == len(
        joined(batches[:3])
    )

    second = S3Writer(f"s3://{name}/r", endpoint_url=endpoint)
    assert second.stats()["recovered_shards"] == 1
    assert second.resume_sequence == int(batches[4].sequence[-1]) + 1
    for batch in batches:
        second.write(batch)
    second.close()
    assert_same_raw(open_dataset(f"s3://{name}/r", endpoint_url=endpoint).read(), joined(batches))


def test_multiwriter_reports_and_retries_each_destination(bucket, endpoint, tmp_path):
    _client, name = bucket
    batches = played()[:8]
    single = s3_client(endpoint, attempts=1)
    flaky = FlakyPuts(single, 1000)
    remote = S3Writer(f"s3://{name}/m", client=single, max_experiences=300, retry_base_delay=0.01)
    local = ParquetWriter(tmp_path, max_experiences=300)
    multi = MultiWriter([local, remote], names=["local", "s3"])
    for batch in batches[:4]:
        multi.write(batch)
    stats = multi.stats()["destinations"]
    assert stats[0]["durable_sequence"] is not None and stats[0]["commit_failures"] == 0
    assert stats[1]["durable_sequence"] is None and stats[1]["commit_failures"] > 0
    assert multi.durable_sequence is None  # not yet durable everywhere
    flaky.count = 0  # the remote recovers
    for batch in batches[4:]:
        multi.write(batch)
    multi.close()
    last = int(batches[-1].sequence[-1])
    assert multi.durable_sequences == [last, last] and multi.durable_sequence == last
    expected = joined(batches)
    assert_same_raw(open_dataset(tmp_path).read(), expected)
    assert_same_raw(open_dataset(f"s3://{name}/m", endpoint_url=endpoint).read(), expected)


def test_bad_s3_destinations(endpoint):
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        S3Writer("s3:///no-bucket", endpoint_url=endpoint)
    with pytest.raises(StorageError, match="not reachable"):
        S3Writer("s3://grl-does-not-exist/x", endpoint_url=endpoint, max_attempts=1)
    with pytest.raises(ValueError, match="format"):
        S3Writer("s3://grl-any/x", format="csv", endpoint_url=endpoint)
    with pytest.raises(ValueError, match="multipart_chunksize"):
        S3Writer("s3://grl-any/x", endpoint_url=endpoint, multipart_chunksize=1024)


def test_server_stopped_mid_upload_is_reported_and_the_retry_stores_everything(endpoint):
    """The S3 server goes away between two parts of a multipart upload: the commit
    fails and says so, nothing is claimed durable that is not, and once the server
    is back the retry stores everything. (A server of its own, on the credentials
    ``endpoint`` sets up.)"""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    own_endpoint = f"http://{host}:{port}"
    client = s3_client(own_endpoint, attempts=1)
    client.create_bucket(Bucket="grl-stopped")
    batches = played()
    expected = joined(batches)
    parts = []

    def stop_on_the_second_part(**_):
        parts.append(1)
        if len(parts) == 2:
            server.stop()

    client.meta.events.register("before-call.s3.UploadPart", stop_on_the_second_part)
    writer = open_writer(
        "tfrecord",
        "s3://grl-stopped/run",
        client=client,
        max_experiences=2000,
        multipart_threshold=5 * 1024 * 1024,
        multipart_chunksize=5 * 1024 * 1024,
        retry_attempts=2,
        retry_base_delay=0.01,
    )
    taken = 0
    try:
        with pytest.raises(StorageError, match="Could not connect"):
            for batch in batches:
                writer.write(batch)  # takes the batch, or raises having taken none of it
                taken += 1
            writer.flush()
        assert writer.durable_sequence is None and "Could not connect" in writer.stats()["failure"]
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        assert not [
            k for k in listed(client, "grl-stopped", "run/") if k.endswith(".tfrecord")
        ]  # nothing half-stored
        for batch in batches[taken:]:
            writer.write(batch)
        writer.close()
        assert writer.durable_sequence == int(expected.sequence[-1])
        assert_same_raw(
            open_dataset("s3://grl-stopped/run", endpoint_url=own_endpoint).read(), expected
        )
    finally:
        server.stop()
