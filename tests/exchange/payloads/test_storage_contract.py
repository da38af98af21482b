"""Both storage backends keep one contract: the local folder and an S3-speaking object store.

The object store is moto's standalone server on loopback (a real HTTP S3 API: ranged GETs,
multipart uploads, ListObjectsV2), started once for the module.
"""

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchange.payloads.object_store import ObjectStorePayloadStorage
from exchange.payloads.storage import (
    CHUNK_SIZE,
    FIRST_READ_SIZE,
    HEADER_SIZE,
    LocalPayloadStorage,
    PayloadCorrupt,
    PayloadStorage,
)
from tests.support.object_store import BUCKET, object_store_client


def _object_store(endpoint: str, prefix: str) -> ObjectStorePayloadStorage:
    return ObjectStorePayloadStorage(
        client=object_store_client(endpoint), bucket=BUCKET, prefix=prefix, sse="AES256"
    )


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> PayloadStorage:
    if request.param == "local":
        return LocalPayloadStorage(tmp_path)
    # A prefix per test: the bucket is shared by the module.
    return _object_store(request.getfixturevalue("s3_endpoint"), f"t{os.urandom(6).hex()}")


def _tamper(storage: PayloadStorage, name: str, edit: Callable[[bytes], bytes]) -> None:
    """Rewrite the stored (sealed) bytes of ``name`` behind the storage's back."""
    if isinstance(storage, LocalPayloadStorage):
        path = storage.path(name)
        path.write_bytes(edit(path.read_bytes()))
        return
    assert isinstance(storage, ObjectStorePayloadStorage)
    key = storage.key(name)
    raw = storage.client.get_object(Bucket=storage.bucket, Key=key)["Body"].read()
    storage.client.put_object(Bucket=storage.bucket, Key=key, Body=edit(raw))


def test_ranged_reads_at_odd_offsets_across_chunk_boundaries(storage: PayloadStorage) -> None:
    # Past what opening a file reads at once: the later reads go back to the store.
    first = FIRST_READ_SIZE // CHUNK_SIZE * CHUNK_SIZE
    data = os.urandom(first + 3 * CHUNK_SIZE + 17)
    writer = storage.write_bytes("requests/1/member.ndjson", data)
    assert writer.size == len(data) == storage.size("requests/1/member.ndjson")
    assert storage.read_bytes("requests/1/member.ndjson") == data
    with storage.open("requests/1/member.ndjson") as reader:
        for offset, length in [
            (0, 1),
            (CHUNK_SIZE - 3, 7),
            (CHUNK_SIZE - 1, 2 * CHUNK_SIZE + 5),
            (2 * CHUNK_SIZE + 1, 10),
            (first - 5, 10),
            (first + CHUNK_SIZE + 3, 2 * CHUNK_SIZE),
            (len(data) - 5, 100),
            (len(data), 10),
        ]:
            assert reader.read_at(offset, length) == data[offset : offset + length]
        assert b"".join(reader.chunks()) == data
    assert storage.write_bytes("requests/1/empty.json", b"").size == 0
    assert storage.read_bytes("requests/1/empty.json") == b""


def test_publication_is_atomic_and_an_abort_leaves_nothing(storage: PayloadStorage) -> None:
    storage.write_bytes("requests/2/bundle.json", b"old")
    writer = storage.writer("requests/2/bundle.json")
    writer.write(b"new" * CHUNK_SIZE)
    # Until the writer closes, readers see the old file, whole.
    assert storage.read_bytes("requests/2/bundle.json") == b"old"
    assert storage.list("requests/2") == ["requests/2/bundle.json"]
    writer.close()
    assert storage.read_bytes("requests/2/bundle.json") == b"new" * CHUNK_SIZE

    with pytest.raises(RuntimeError), storage.writer("requests/2/manifest.json") as aborted:
        aborted.write(b"{}" * CHUNK_SIZE)
        raise RuntimeError("worker killed")
    assert not storage.exists("requests/2/manifest.json")
    assert storage.list("requests/2") == ["requests/2/bundle.json"]


def test_list_children_rename_delete_and_delete_tree(storage: PayloadStorage) -> None:
    for name in ["requests/3/a.json", "requests/3/staging/p1.ndjson", "requests/4/b.json"]:
        storage.write_bytes(name, b"x")
    assert storage.list("requests/3") == ["requests/3/a.json", "requests/3/staging/p1.ndjson"]
    assert [(entry.name, entry.folder) for entry in storage.children("requests/3")] == [
        ("a.json", False),
        ("staging", True),
    ]
    assert storage.is_folder("requests/3/staging") and not storage.is_folder("requests/9")
    storage.rename("requests/3/a.json", "requests/3/c.json")
    assert storage.read_bytes("requests/3/c.json") == b"x"
    assert not storage.exists("requests/3/a.json")
    with pytest.raises(FileNotFoundError):
        storage.rename("requests/3/a.json", "requests/3/d.json")
    storage.delete("requests/3/c.json")
    storage.delete("requests/3/c.json")  # deleting what is gone is not an error
    storage.delete_tree("requests/3")
    assert storage.list("requests/3") == []
    assert storage.list("") == ["requests/4/b.json"]
    with pytest.raises(FileNotFoundError):
        storage.open("requests/3/c.json")


def test_size_and_modified_at_come_from_the_store(storage: PayloadStorage) -> None:
    before = datetime.now(tz=UTC) - timedelta(seconds=2)
    storage.write_bytes("requests/5/bundle.json", b"y" * (CHUNK_SIZE + 1))
    assert storage.size("requests/5/bundle.json") == CHUNK_SIZE + 1
    assert before <= storage.modified_at("requests/5/bundle.json") <= datetime.now(tz=UTC)
    assert storage.stat("requests/5/missing.json") is None
    with pytest.raises(FileNotFoundError):
        storage.size("requests/5/missing.json")


def test_a_corrupt_or_truncated_file_is_refused(storage: PayloadStorage) -> None:
    storage.write_bytes("requests/6/bundle.json", b"z" * (2 * CHUNK_SIZE))

    _tamper(storage, "requests/6/bundle.json", lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(PayloadCorrupt):
        storage.read_bytes("requests/6/bundle.json")

    storage.write_bytes("requests/6/bundle.json", b"z" * (2 * CHUNK_SIZE))
    _tamper(storage, "requests/6/bundle.json", lambda raw: raw[: HEADER_SIZE + CHUNK_SIZE + 16])
    with pytest.raises(PayloadCorrupt):
        storage.read_bytes("requests/6/bundle.json")

    _tamper(storage, "requests/6/bundle.json", lambda raw: b"not a payload file at all, really")
    with pytest.raises(PayloadCorrupt, match="not a payload file"):
        storage.open("requests/6/bundle.json")
    _tamper(storage, "requests/6/bundle.json", lambda raw: b"")
    with pytest.raises(PayloadCorrupt, match="not a payload file"):
        storage.open("requests/6/bundle.json")


@pytest.mark.parametrize(
    "name",
    [
        "", "../etc/passwd", "/absolute", "requests/../x", "a\\b", "x.partial", ".hidden",
        # Refused by the hub in its own words, not by a file system's or a store's limit.
        "requests/7/" + "n" * 201, "/".join(["folder"] * 144),
    ],
)  # fmt: skip
def test_names_outside_the_grammar_are_refused(storage: PayloadStorage, name: str) -> None:
    with pytest.raises(ValueError, match="payload name"):
        storage.writer(name)
    with pytest.raises(ValueError, match="payload name"):
        storage.exists(name)


def test_the_longest_names_are_kept(storage: PayloadStorage) -> None:
    longest_part = "requests/7/" + "n" * 200
    longest = "/".join(["f"] * 499) + "/x"  # 1,000 characters
    for name in (longest_part, longest):
        with storage.writer(name) as writer:
            writer.write(b"kept")
        assert storage.read_bytes(name) == b"kept"


def test_a_file_replaced_while_it_is_read_is_refused_not_mixed(storage: PayloadStorage) -> None:
    # Past what opening a file reads at once: its end is read from the store after the change.
    size = FIRST_READ_SIZE + 2 * CHUNK_SIZE
    storage.write_bytes("requests/7/bundle.json", b"a" * size)
    with storage.open("requests/7/bundle.json") as reader:
        assert reader.read_at(0, 10) == b"a" * 10
        storage.write_bytes("requests/7/bundle.json", b"b" * size)
        assert reader.read_at(CHUNK_SIZE, 10) == b"a" * 10
        if isinstance(storage, LocalPayloadStorage):
            # The open file is the old one (the new one was renamed over its name).
            assert reader.read_at(size - 10, 10) == b"a" * 10
        else:
            with pytest.raises(PayloadCorrupt, match="replaced"):
                reader.read_at(size - 10, 10)
