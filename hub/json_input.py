"""Read a JSON body from outside the hub, refusing what would fail later as a server error.

One reader for every JSON body an outside party sends (the payer-system API, the Consent
endpoint) and every JSON document a provider answers with (discovery, JWKS, userinfo):

- nesting deeper than ``MAX_JSON_DEPTH``: the standard library parses by recursion and
  raises RecursionError (no ValueError) on a few thousand brackets, and every later walk of
  the value (model validation, rendering) recurses again. No document the hub reads comes
  near the limit;
- a NUL character in any string or member name: PostgreSQL's text and jsonb types cannot
  store U+0000 (PostgreSQL docs §8.3, §8.14), so it would fail at the database, and no
  field the hub reads has a use for it.
"""

import json
from typing import Any

MAX_JSON_DEPTH = 64


class JsonInputRefused(ValueError):
    """The JSON cannot be read; the message says why, in a sentence naming ``what``.
    ``not_json`` tells text that is no JSON at all from JSON the hub refuses to read."""

    def __init__(self, message: str, *, not_json: bool = False) -> None:
        super().__init__(message)
        self.not_json = not_json


def json_input_load(data: bytes | str, *, what: str = "The body") -> Any:
    """Return the value ``data`` holds; raise JsonInputRefused naming the problem."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise JsonInputRefused(
            f"{what} is JSON nested deeper than {MAX_JSON_DEPTH} levels, which the hub does "
            "not read."
        ) from None
    except ValueError as exc:
        # UnicodeDecodeError is a ValueError too: bytes that are not UTF-8 (RFC 8259 §8.1).
        raise JsonInputRefused(f"{what} is not JSON ({exc}).", not_json=True) from None
    json_value_check(value, what=what)
    return value


def json_value_check(value: Any, *, what: str = "The body") -> None:
    """Raise JsonInputRefused if ``value`` nests too deeply or holds a NUL character."""
    pending: list[tuple[Any, int, str]] = [(value, 1, "")]
    while pending:
        item, depth, where = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise JsonInputRefused(_nul_sentence(what, where))
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise JsonInputRefused(
                f"{what} is JSON nested deeper than {MAX_JSON_DEPTH} levels, which the hub "
                "does not read."
            )
        if isinstance(item, dict):
            for key, member in item.items():
                path = f"{where}.{key}" if where else str(key)
                if "\x00" in key:
                    raise JsonInputRefused(_nul_sentence(what, where, in_name=True))
                pending.append((member, depth + 1, path))
        else:
            pending.extend(
                (member, depth + 1, f"{where}[{index}]") for index, member in enumerate(item)
            )


def _nul_sentence(what: str, where: str, *, in_name: bool = False) -> str:
    place = f" at {where}" if where else ""
    if in_name:
        place = f" in a member name{place}"
    return (
        f"{what} holds a NUL character (\\u0000){place}; no field the hub reads may contain "
        "one. Remove it and send again."
    )
