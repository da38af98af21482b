"""Payload files are encrypted at rest, appear atomically, and detect tampering and truncation."""

import base64
import os
from pathlib import Path

import pytest
from django.test import override_settings

from exchange.payloads.storage import CHUNK_SIZE, HEADER_SIZE, LocalPayloadStorage, PayloadCorrupt

RECORD = b'{"resourceType":"Patient","id":"pat1","name":[{"family":"Person"}]}\n'


@pytest.fixture
def storage(tmp_path: Path) -> LocalPayloadStorage:
    return LocalPayloadStorage(tmp_path)


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17]
)
def test_round_trip_at_every_chunk_boundary(storage: LocalPayloadStorage, size: int) -> None:
    data = os.urandom(size)
    writer = storage.write_bytes("requests/1/file.bin", data)
    assert storage.read_bytes("requests/1/file.bin") == data
    assert storage.size("requests/1/file.bin") == size == writer.size
    with storage.open("requests/1/file.bin") as reader:
        assert reader.read_at(size // 2, 100) == data[size // 2 : size // 2 + 100]
        assert reader.read_at(size, 10) == b""
        assert b"".join(reader.chunks()) == data


def test_plaintext_never_reaches_the_disk(storage: LocalPayloadStorage) -> None:
    storage.write_bytes("requests/1/bundle.json", RECORD * 1000)
    raw = (storage.root / "requests/1/bundle.json").read_bytes()
    assert b"Person" not in raw
    assert b"Patient" not in raw


def test_a_failed_write_leaves_nothing_under_the_final_name(storage: LocalPayloadStorage) -> None:
    with pytest.raises(RuntimeError), storage.writer("requests/1/bundle.json") as writer:
        writer.write(RECORD)
        raise RuntimeError("worker killed")
    assert not storage.exists("requests/1/bundle.json")
    assert storage.list("requests/1") == []


def test_a_file_being_written_is_not_listed(storage: LocalPayloadStorage) -> None:
    writer = storage.writer("requests/1/bundle.json")
    writer.write(RECORD)
    assert storage.list("requests") == []
    writer.close()
    assert storage.list("requests") == ["requests/1/bundle.json"]


def test_two_writers_of_one_name_never_mix_their_bytes(storage: LocalPayloadStorage) -> None:
    # A task Celery delivers twice, or a step the reaper resumes while it still runs,
    # writes the same payload name twice at once; the name must end up holding one of them.
    first, second = b"1" * (2 * CHUNK_SIZE + 3), b"2" * (CHUNK_SIZE + 7)
    one = storage.writer("requests/1/staging/00001.ndjson")
    one.write(first[:CHUNK_SIZE])
    two = storage.writer("requests/1/staging/00001.ndjson")
    two.write(second)
    one.write(first[CHUNK_SIZE:])
    two.close()
    assert storage.read_bytes("requests/1/staging/00001.ndjson") == second
    one.close()
    assert storage.read_bytes("requests/1/staging/00001.ndjson") == first
    assert storage.list("requests/1") == ["requests/1/staging/00001.ndjson"]


def test_truncation_and_tampering_are_detected(storage: LocalPayloadStorage) -> None:
    storage.write_bytes("a.bin", os.urandom(2 * CHUNK_SIZE + 5))
    path = storage.root / "a.bin"
    whole = path.read_bytes()
    # Cut off exactly at a chunk boundary: the new last chunk is not flagged final.
    path.write_bytes(whole[: HEADER_SIZE + 2 * (CHUNK_SIZE + 16)])
    with pytest.raises(PayloadCorrupt):
        storage.read_bytes("a.bin")
    flipped = bytearray(whole)
    flipped[HEADER_SIZE + 10] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(PayloadCorrupt):
        storage.read_bytes("a.bin")


def test_files_stay_readable_after_key_rotation_and_not_after_the_key_is_dropped(
    storage: LocalPayloadStorage, settings: object
) -> None:
    old_keys = list(settings.FIELD_ENCRYPTION_KEYS)
    storage.write_bytes("a.bin", RECORD)
    new_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key, *old_keys]):
        assert storage.read_bytes("a.bin") == RECORD
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key]), pytest.raises(PayloadCorrupt):
        storage.read_bytes("a.bin")


@pytest.mark.parametrize(
    "name", ["../escape", "/etc/passwd", "a/../../b", "", "a/.hidden", "x.partial"]
)
def test_names_that_could_escape_the_root_are_refused(
    storage: LocalPayloadStorage, name: str
) -> None:
    with pytest.raises(ValueError, match="payload name"):
        storage.path(name)
