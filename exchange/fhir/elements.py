"""Read a repeating element of FHIR JSON a holder sent, whatever the holder sent.

In FHIR's JSON a repeating element is always an array (FHIR R4 §2.6.2, "JSON
representation of resources": "...elements that may repeat are represented as arrays"),
so ``bundle["entry"]`` that is a number, a string or an object is a malformed answer, not
an empty one: taking it for empty would lose records without a word.
"""

from typing import Any

from exchange.fhir.errors import FhirPermanentError


def repeated(node: dict[str, Any], name: str, *, where: str, code: str) -> list[Any]:
    """Return the array ``name`` of ``node`` ([] when absent or null); raise
    FhirPermanentError with ``code``, naming ``where`` and the element, for anything else."""
    value = node.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise FhirPermanentError(
            f"{where}: its {name!r} is {type(value).__name__ if not isinstance(value, dict) else 'an object'}, "
            "not an array as FHIR's JSON format has every repeating element.",
            code=code,
        )
    return value
