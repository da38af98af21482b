"""Staged packages to deliver, and the repository server for collection checks."""

import json
from pathlib import Path

import pytest

from exchange.delivery import DeliveredFile, deliver_files, delivery_remote_directory
from exchange.payloads.storage import LocalPayloadStorage
from tests.conftest import Tenant
from tests.exchange.repository.conftest import repository  # noqa: F401 - fixture reused here


class Package:
    """A request's files staged in LocalPayloadStorage: a bundle, an NDJSON file, the manifest last."""

    def __init__(self, root: Path, request_folder: str = "requests/42") -> None:
        self.storage = LocalPayloadStorage(root=root)
        self.contents = {
            "bundle.json": json.dumps({"resourceType": "Bundle", "type": "collection"}).encode()
            * 40_000,
            "Coverage.ndjson": b'{"resourceType": "Coverage", "id": "c1"}\n' * 1000,
            "manifest.json": json.dumps({"request": 42, "files": ["bundle.json"]}).encode(),
        }
        for name, data in self.contents.items():
            self.storage.write_bytes(f"{request_folder}/{name}", data)
        self.files = [(f"{request_folder}/{name}", name) for name in self.contents]


def deliver_request_42(tenant: Tenant, package: Package) -> list[DeliveredFile]:
    """Deliver ``package`` as request 42 from South, where ``tenant`` collects deliveries."""
    folder = delivery_remote_directory(payer=tenant.payer, former_payer_slug="south", request_id=42)
    return deliver_files(
        payer=tenant.payer, remote_directory=folder, storage=package.storage, files=package.files
    )


@pytest.fixture
def package(tmp_path: Path) -> Package:
    return Package(tmp_path / "staging")
