"""Start-up refuses a missing or malformed environment value and names it (STYLE.md #8)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "SECRET_KEY": "production-like-secret-" + Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "hub.example.com",
    "DATABASE_URL": "postgresql://hub@db.internal:5432/hub",
    "CELERY_BROKER_URL": "redis://broker.internal:6379/0",
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean_env = {k: v for k, v in os.environ.items() if k not in GOOD and not k.startswith("HTTPS")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SECRET_KEY", None, "SECRET_KEY is required"),
        ("SECRET_KEY", "short", "SECRET_KEY must be at least 50"),
        ("ALLOWED_HOSTS", None, "ALLOWED_HOSTS is required"),
        ("DATABASE_URL", "mysql://db/hub", "DATABASE_URL must start with postgresql://"),
        ("DATABASE_URL", None, "DATABASE_URL is required"),
        (
            "CELERY_BROKER_URL",
            "carrier-pigeon://loft",
            "CELERY_BROKER_URL must be a URL with scheme",
        ),
        ("FIELD_ENCRYPTION_KEYS", "not-a-key", "FIELD_ENCRYPTION_KEYS: key 1 is not a Fernet key"),
        pytest.param(
            "FIELD_ENCRYPTION_KEYS",
            f"{GOOD['FIELD_ENCRYPTION_KEYS']},oops",
            "key 2 is not a Fernet key",
            id="FIELD_ENCRYPTION_KEYS-a good key then oops",  # the key is drawn afresh each run
        ),
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        (
            "OUTBOUND_READ_TIMEOUT_SECONDS",
            "soon",
            "OUTBOUND_READ_TIMEOUT_SECONDS must be a whole number",
        ),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be"),
        ("CACHE_URL", "memcached://cache:11211", "CACHE_URL must be a URL with scheme redis"),
    ],
)
def test_a_bad_environment_value_stops_start_up_naming_it(
    variable: str, value: str | None, message: str
) -> None:
    env = dict(GOOD)
    if value is None:
        env.pop(variable)
    else:
        env[variable] = value
    result = _manage("check", **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret_key"
    secret_file.write_text("y" * 60 + "\n")
    env = {k: v for k, v in GOOD.items() if k != "SECRET_KEY"}
    assert _manage("check", SECRET_KEY_FILE=str(secret_file), **env).returncode == 0
    missing = _manage("check", SECRET_KEY_FILE=str(tmp_path / "nope"), **env)
    assert "SECRET_KEY_FILE: cannot read" in missing.stderr


def test_check_deploy_is_clean_with_production_values() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **GOOD)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
