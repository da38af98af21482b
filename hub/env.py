"""Typed readers of the environment: the only place settings come from (STYLE.md #8).

Every reader fails loudly with ``ImproperlyConfigured`` naming the variable, so a
missing or malformed value stops start-up instead of surfacing later as a 500.
A secret may also be given as ``NAME_FILE`` (a path whose content is the value),
which is how container orchestrators hand secrets over.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_UNSET = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_name}: {exc}") from exc
    return os.environ.get(name)


def env_str(name: str, default: object = _UNSET) -> str:
    """Return the variable's value; without a default, a missing or empty one is an error."""
    value = _raw(name)
    if value is None or value == "":
        if default is _UNSET:
            raise ImproperlyConfigured(f"{name} is required but not set")
        return str(default)
    return value


def env_bool(name: str, default: bool) -> bool:
    """Return a boolean written as 1/0, true/false, yes/no or on/off."""
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    """Return an integer no smaller than ``minimum``."""
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Return a comma-separated list without blanks; without a default, empty is an error."""
    value = _raw(name)
    items = [item.strip() for item in (value or "").split(",") if item.strip()]
    if not items:
        if default is None:
            raise ImproperlyConfigured(f"{name} is required but not set")
        return list(default)
    return items


def env_choice(name: str, default: str, *, choices: tuple[str, ...]) -> str:
    """Return one of ``choices`` (exactly as spelled there)."""
    value = env_str(name, default)
    if value not in choices:
        allowed = ", ".join(choices)
        raise ImproperlyConfigured(f"{name} must be one of {allowed}, not {value!r}")
    return value


def env_url(name: str, default: object = _UNSET, *, schemes: tuple[str, ...]) -> str:
    """Return a URL whose scheme is one of ``schemes``."""
    value = env_str(name, default)
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        allowed = ", ".join(schemes)
        raise ImproperlyConfigured(f"{name} must be a URL with scheme {allowed}, not {value!r}")
    return value


def env_readable_file(name: str) -> str:
    """Return the path of a file the process can read, or "" when the variable is unset."""
    value = env_str(name, "")
    if value and not os.access(value, os.R_OK):
        raise ImproperlyConfigured(f"{name}: cannot read {value} (no such file, or not readable)")
    if value and not Path(value).is_file():
        raise ImproperlyConfigured(f"{name}: {value} is not a file")
    return value
