"""A running repository server with a registered key at North and one at South."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings

from exchange.repository.models import RepositoryKey
from exchange.repository.services import repository_key_register
from tests.conftest import Tenant
from tests.exchange.repository.harness import (
    ClientKey,
    RunningRepository,
    client_key,
    running_repository,
)


@pytest.fixture
def repository(
    transactional_db: None, settings: Settings, tmp_path: Path
) -> Iterator[RunningRepository]:
    settings.SFTP_REPOSITORY_DIR = tmp_path / "repository"
    with running_repository(workdir=tmp_path) as running:
        yield running


@dataclass
class SystemKey:
    """A payer's system: its key files and the registered RepositoryKey."""

    key: ClientKey
    row: RepositoryKey


def register_system_key(tenant: Tenant, directory: Path, name: str, **options: object) -> SystemKey:
    key = client_key(directory, name)
    row = repository_key_register(
        payer=tenant.payer,
        label=name,
        public_key=key.public_line,
        allowed_sources=options.pop("allowed_sources", []),
        expires_at=options.pop("expires_at", None),
        created_by=tenant.admin,
    )
    return SystemKey(key=key, row=row)


@pytest.fixture
def north_system(north: Tenant, tmp_path: Path) -> SystemKey:
    return register_system_key(north, tmp_path, "north-collector")


@pytest.fixture
def south_system(south: Tenant, tmp_path: Path) -> SystemKey:
    return register_system_key(south, tmp_path, "south-collector")
