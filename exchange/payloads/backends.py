"""Which backend holds payloads: PAYLOAD_STORAGE_BACKEND chooses the local folder or the
S3-compatible object store (README "Payload storage"); every step asks here, never for a path."""

from pathlib import Path

from django.conf import settings

from exchange.payloads.storage import PAYLOADS_OBJECT_PREFIX, LocalPayloadStorage, PayloadStorage


def payload_storage_backend(*, local_root: Path, object_prefix: str) -> PayloadStorage:
    """Return the backend PAYLOAD_STORAGE_BACKEND names: ``local_root`` for the local one,
    ``object_prefix`` in PAYLOAD_S3_BUCKET for the object store."""
    if settings.PAYLOAD_STORAGE_BACKEND == "s3":
        # Imported here: boto3 loads only in processes configured for the object store.
        from exchange.payloads.object_store import ObjectStorePayloadStorage

        return ObjectStorePayloadStorage.from_settings(prefix=object_prefix)
    return LocalPayloadStorage(local_root)


def payload_storage() -> PayloadStorage:
    """Return the storage of staged, screened and packaged files (``payloads/`` in a bucket)."""
    return payload_storage_backend(
        local_root=settings.PAYLOAD_STORAGE_DIR, object_prefix=PAYLOADS_OBJECT_PREFIX
    )
