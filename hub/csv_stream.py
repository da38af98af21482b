"""Stream rows as a CSV download: the one way the portal and the operator console export a list."""

import csv
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.http import StreamingHttpResponse
from django.utils import timezone

# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV Injection");
# member names come from each payer's identity provider or roster, so they are quoted as text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    """A write-only file for csv.writer: hands each line back to the streaming response."""

    def write(self, line: str) -> str:
        return line


def csv_stream_response(*, rows: Iterable[Iterable[object]], name: str) -> StreamingHttpResponse:
    """Stream ``rows`` as the CSV file ``<name>-<time>.csv``, so 100,000 rows never sit in
    memory at once; a cell that a spreadsheet would run as a formula is quoted as text."""
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        for row in rows:
            yield writer.writerow([_csv_cell(value) for value in row])

    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    return StreamingHttpResponse(
        lines(),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'},
    )
