"""Payload files in an S3-compatible object store (PAYLOAD_STORAGE_BACKEND=s3).

The objects hold the same sealed format as the local files (``storage.py``): the hub's own
per-file AES-256-GCM stays, and the bucket's server-side encryption (PAYLOAD_S3_SSE) is on
top of it, so neither the store's operator nor a leaked bucket policy sees a member's record.

- Atomic publication: a writer seals into a temporary file on the worker and uploads it
  when it closes. A PUT (or a multipart upload, for large files) makes the object visible
  under its key only once complete (S3 API, PutObject / CompleteMultipartUpload), so a
  reader sees the whole object or none; an aborted writer uploads nothing.
- Ranged reads: a read at an offset is one ``GET`` with ``Range: bytes=a-b`` of the sealed
  chunks that cover it (RFC 9110 §14.1.2), which serves the SFTP repository's reads at
  offsets and resumable downloads without fetching the whole object. Opening a file is
  one such GET of its first MiB (``FIRST_READ_SIZE``), which also gives its size and
  version: most payload files are smaller, and are read in that one round trip.
- Folders are key prefixes (``ListObjectsV2`` with a ``/`` delimiter); a rename is a
  server-side copy then a delete, and the copy is atomic for the target key.
"""

import tempfile
from functools import lru_cache
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError
from django.conf import settings

from exchange.payloads.storage import (
    FIRST_READ_SIZE,
    PayloadCorrupt,
    PayloadReader,
    PayloadStorage,
    PayloadWriter,
    StoredEntry,
    StoredFile,
    plaintext_size,
)

# boto3 builds its clients at run time; no type stubs are installed for them.
S3Client = Any

# A writer keeps this much in memory before spilling to a temporary file.
_SPOOL_BYTES = 8 * 1024 * 1024
# A file larger than a part goes up in parts of this size (boto3's default). S3 refuses
# parts smaller than 5 MiB but the last, and takes at most 10,000 of them (S3 API reference,
# UploadPart; boto3 raises the part size itself for a file that would need more).
PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024
# DeleteObjects takes at most 1000 keys per call (S3 API reference, DeleteObjects).
_DELETE_BATCH = 1000
_MISSING = {"404", "NoSuchKey", "NotFound"}
_REPLACED = {"412", "PreconditionFailed"}
_EMPTY = {"416", "InvalidRange"}


@lru_cache(maxsize=8)
def _client(endpoint: str, region: str, access_key_id: str, secret_access_key: str) -> S3Client:
    # One client per configuration and process: clients are thread-safe and pool connections.
    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        region_name=region,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        config=Config(
            retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}
        ),
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code"))


def _missing(exc: ClientError) -> bool:
    return _error_code(exc) in _MISSING


class _ObjectSink:
    def __init__(self, storage: "ObjectStorePayloadStorage", key: str) -> None:
        self._storage = storage
        self._key = key
        self._file = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 - closed in publish()/discard()

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def publish(self) -> None:
        try:
            self._file.seek(0)
            self._storage.client.upload_fileobj(
                self._file,
                self._storage.bucket,
                self._key,
                ExtraArgs=self._storage.sse_args,
                Config=self._storage.transfer,
            )
        finally:
            self._file.close()

    def discard(self) -> None:
        self._file.close()


class _ObjectSource:
    def __init__(self, storage: "ObjectStorePayloadStorage", key: str) -> None:
        self._storage = storage
        self._key = key
        # One GET of the first bytes gives the size (Content-Range, RFC 9110 §14.4), the
        # version and what a reader reads first: a small file costs one round trip, not a
        # HEAD and two ranged GETs.
        try:
            response = storage.client.get_object(
                Bucket=storage.bucket, Key=key, Range=f"bytes=0-{FIRST_READ_SIZE - 1}"
            )
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(key) from None
            if _error_code(exc) in _EMPTY:
                # An empty object has no first byte to range over (RFC 9110 §15.5.17).
                self.stored_size, self._first, self._etag = 0, b"", ""
                return
            raise
        self._first = bytes(response["Body"].read())
        content_range = response.get("ContentRange")
        # A store that ignores Range answers the whole object (RFC 9110 §14.2).
        self.stored_size = (
            int(content_range.rsplit("/", 1)[1]) if content_range else len(self._first)
        )
        # Every range is read from this version (If-Match, RFC 9110 §13.1.1): a file replaced
        # while it is being read is refused as corrupt instead of mixing two files' chunks.
        self._etag = str(response["ETag"])

    def read_range(self, offset: int, length: int) -> bytes:
        end = min(self.stored_size, offset + length) - 1
        if length <= 0 or offset > end:
            return b""
        if end < len(self._first):
            return self._first[offset : end + 1]
        try:
            response = self._storage.client.get_object(
                Bucket=self._storage.bucket,
                Key=self._key,
                Range=f"bytes={offset}-{end}",
                IfMatch=self._etag,
            )
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(self._key) from None
            if _error_code(exc) in _REPLACED:
                raise PayloadCorrupt("a payload file was replaced while it was read") from None
            raise
        return bytes(response["Body"].read())

    def close(self) -> None:
        """Nothing is held open between ranged reads."""


class ObjectStorePayloadStorage(PayloadStorage):
    """Payload files as objects under ``prefix/`` in one bucket; a file larger than
    ``part_size`` goes up (and is copied) in parts of that size."""

    def __init__(
        self,
        *,
        client: S3Client,
        bucket: str,
        prefix: str,
        sse: str,
        kms_key_id: str = "",
        part_size: int = PART_SIZE,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"S3 takes no parts smaller than {MIN_PART_SIZE} bytes")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.transfer = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size)
        self.sse_args: dict[str, str] = {}
        if sse != "none":
            self.sse_args["ServerSideEncryption"] = sse
        if sse == "aws:kms" and kms_key_id:
            self.sse_args["SSEKMSKeyId"] = kms_key_id

    @classmethod
    def from_settings(cls, *, prefix: str) -> "ObjectStorePayloadStorage":
        client = _client(
            settings.PAYLOAD_S3_ENDPOINT,
            settings.PAYLOAD_S3_REGION,
            settings.PAYLOAD_S3_ACCESS_KEY_ID,
            settings.PAYLOAD_S3_SECRET_ACCESS_KEY,
        )
        return cls(
            client=client,
            bucket=settings.PAYLOAD_S3_BUCKET,
            prefix=prefix,
            sse=settings.PAYLOAD_S3_SSE,
            kms_key_id=settings.PAYLOAD_S3_KMS_KEY_ID,
        )

    def key(self, name: str) -> str:
        """Return the object key of ``name``; refuse names outside the grammar."""
        return f"{self.prefix}/{self.validate(name)}"

    def _folder_key(self, prefix: str) -> str:
        return f"{self.key(prefix)}/" if prefix else f"{self.prefix}/"

    def _name(self, key: str) -> str:
        return key[len(self.prefix) + 1 :]

    def writer(self, name: str, *, durable: bool = True) -> PayloadWriter:
        # ``durable`` has nothing to skip: an object exists only once the store has kept it.
        return PayloadWriter(_ObjectSink(self, self.key(name)))

    def open(self, name: str) -> PayloadReader:
        return PayloadReader(_ObjectSource(self, self.key(name)), name=name)

    def stat(self, name: str) -> StoredFile | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return StoredFile(
            name=self.validate(name),
            size=plaintext_size(int(head["ContentLength"])),
            modified_at=head["LastModified"],
        )

    def is_folder(self, name: str) -> bool:
        response = self.client.list_objects_v2(
            Bucket=self.bucket, Prefix=self._folder_key(name), MaxKeys=1
        )
        return int(response.get("KeyCount", 0)) > 0

    def _objects(self, prefix: str) -> list[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._folder_key(prefix)
        )
        return [item for page in pages for item in page.get("Contents", [])]

    def files(self, prefix: str) -> list[StoredFile]:
        return sorted(
            (
                StoredFile(
                    name=self._name(item["Key"]),
                    size=plaintext_size(int(item["Size"])),
                    modified_at=item["LastModified"],
                )
                for item in self._objects(prefix)
            ),
            key=lambda stored: stored.name,
        )

    def children(self, prefix: str) -> list[StoredEntry]:
        folder = self._folder_key(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder, Delimiter="/"
        )
        entries = []
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                entries.append(
                    StoredEntry(name=common["Prefix"][len(folder) :].rstrip("/"), folder=True)
                )
            for item in page.get("Contents", []):
                entries.append(StoredEntry(name=item["Key"][len(folder) :], folder=False))
        return sorted(entries, key=lambda entry: entry.name)

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(name))

    def delete_tree(self, prefix: str) -> None:
        keys = [item["Key"] for item in self._objects(self.validate(prefix))]
        for start in range(0, len(keys), _DELETE_BATCH):
            self.client.delete_objects(
                Bucket=self.bucket,
                Delete={
                    "Objects": [{"Key": key} for key in keys[start : start + _DELETE_BATCH]],
                    "Quiet": True,
                },
            )

    def rename(self, source: str, target: str) -> None:
        source_key = self.key(source)
        if self.stat(source) is None:
            raise FileNotFoundError(source)
        # A managed copy: server-side, in parts above the part size (CopyObject takes at
        # most 5 GiB; S3 API reference, UploadPartCopy).
        self.client.copy(
            {"Bucket": self.bucket, "Key": source_key},
            self.bucket,
            self.key(target),
            ExtraArgs=self.sse_args,
            Config=self.transfer,
        )
        self.client.delete_object(Bucket=self.bucket, Key=source_key)

    def describe(self) -> str:
        return f"object store: {self.bucket}/{self.prefix}/"
