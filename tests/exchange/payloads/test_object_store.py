"""What only the object-store backend does, against moto's S3 server on loopback: a large
file goes up in a multipart upload, and the bucket's aws:kms encryption uses the hub's key.
(What both backends do is the contract suite's, test_storage_contract.py.)"""

import os
from typing import Any

from exchange.payloads.object_store import MIN_PART_SIZE, ObjectStorePayloadStorage
from exchange.payloads.storage import CHUNK_SIZE
from tests.support.object_store import BUCKET, object_store_client, object_store_settings_apply


def _prefix() -> str:
    # A prefix per test: the bucket is shared by the module.
    return f"t{os.urandom(6).hex()}"


def test_a_large_file_goes_up_in_parts_and_appears_only_once_complete(s3_endpoint: str) -> None:
    client = object_store_client(s3_endpoint)
    storage = ObjectStorePayloadStorage(
        client=client, bucket=BUCKET, prefix=_prefix(), sse="AES256", part_size=MIN_PART_SIZE
    )
    name = "requests/1/bundle.json"
    data = os.urandom(MIN_PART_SIZE + 3 * CHUNK_SIZE + 17)
    visible_while_parts_went_up = []

    def part_uploaded(**_: Any) -> None:
        visible_while_parts_went_up.append(storage.exists(name))

    client.meta.events.register("after-call.s3.UploadPart", part_uploaded)
    writer = storage.writer(name)
    writer.write(data)
    assert not storage.exists(name)
    writer.close()

    # Two parts went up, and the object appeared only when the upload was completed.
    assert visible_while_parts_went_up == [False, False]
    # A multipart object's ETag is the digest of its parts' digests and their count.
    assert client.head_object(Bucket=BUCKET, Key=storage.key(name))["ETag"].endswith('-2"')
    assert storage.size(name) == len(data)
    assert storage.read_bytes(name) == data
    with storage.open(name) as reader:
        # Around the end of the first part (the sealed file is slightly larger than ``data``).
        for offset, length in [(0, 7), (MIN_PART_SIZE - 3 * CHUNK_SIZE, 4 * CHUNK_SIZE + 9)]:
            assert reader.read_at(offset, length) == data[offset : offset + length]
        assert reader.read_at(len(data) - 20, 50) == data[-20:]


def test_aws_kms_encrypts_every_object_with_the_configured_key(
    s3_endpoint: str, settings: Any
) -> None:
    key = object_store_client(s3_endpoint, "kms").create_key(Description="hub payloads")
    object_store_settings_apply(settings, s3_endpoint)
    settings.PAYLOAD_S3_SSE = "aws:kms"
    settings.PAYLOAD_S3_KMS_KEY_ID = key["KeyMetadata"]["KeyId"]
    storage = ObjectStorePayloadStorage.from_settings(prefix=_prefix())
    storage.write_bytes("requests/2/bundle.json.upload", b"Patricia's record")
    # A rename is a server-side copy: the copy is encrypted with the same key.
    storage.rename("requests/2/bundle.json.upload", "requests/2/bundle.json")

    head = storage.client.head_object(Bucket=BUCKET, Key=storage.key("requests/2/bundle.json"))
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] in {key["KeyMetadata"]["KeyId"], key["KeyMetadata"]["Arn"]}
    assert storage.read_bytes("requests/2/bundle.json") == b"Patricia's record"
