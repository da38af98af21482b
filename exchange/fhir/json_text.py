"""FHIR JSON text read and written at orjson's speed, with the standard library's results.

A member's record is a hundred megabytes of JSON, parsed once as it arrives, written once to
staging and parsed again by screening: the standard library's ``json`` was most of the worker's
time. orjson is several times faster but does not give the same answer for everything the
standard library accepts, so each function here takes orjson's answer only where the two agree
and otherwise the standard library's, errors and their messages included:

- integers beyond 64 bits: orjson turns them into floats, silently. A number of 19 or more digits
  is the only way to write one, so text holding a run of 19 digits goes to the standard library;
- ``NaN``, ``Infinity``, an exponent past a double, a lone UTF-16 surrogate escape, text in
  UTF-16 or UTF-32: orjson refuses them (RFC 8259 §6 and §8.1 do not allow them either) where
  the standard library reads them; on any orjson error the standard library decides, so a
  malformed page is named in the standard library's words, as before;
- written back, orjson turns ``NaN`` and ``Infinity`` into ``null`` and refuses integers beyond
  64 bits and lone surrogates: output holding ``null`` (rare in FHIR, which forbids null values)
  or an orjson error is written by the standard library instead.

Floats are written in their shortest form by both, orjson without an exponent's ``+``
(``1e100`` for ``1e+100``): the same number (RFC 8259 §6).
"""

import json
import re
from typing import Any

import orjson

# 19 digits in a row: the shortest integer orjson might read as a float (2**63 has 19).
_MAYBE_BEYOND_64_BITS = re.compile(rb"\d{19}")


def json_parse(text: bytes) -> Any:
    """Return what ``json.loads(text)`` returns, raising what it raises."""
    if _MAYBE_BEYOND_64_BITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # the standard library reads it, or names the problem its own way
    return json.loads(text)


def json_compact(value: Any) -> bytes:
    """Return ``value`` as compact UTF-8 JSON: ``json.dumps(value, separators=(",", ":"),
    ensure_ascii=False).encode()``, but for how floats are spelled (module docstring)."""
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError:
        text = b"null"  # the standard library writes it, or refuses it its own way
    if b"null" in text:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return text
