"""Where one request's files lie in PayloadStorage: a folder per request, one per step in it.

::

    requests/<id>/staging/<page, 5 digits>.ndjson   retrieval's pages, one resource a line
    requests/<id>/screened/                         what screening kept, quarantined, counted
    requests/<id>/package/                          the Bundle (or NDJSON) and manifest.json

The request's folder is what retention purges as a whole.
"""

from dataclasses import dataclass

REQUESTS_FOLDER = "requests"


@dataclass(frozen=True)
class RequestFiles:
    """The folders of one request's files, as PayloadStorage names."""

    request_id: int

    @property
    def root(self) -> str:
        return f"{REQUESTS_FOLDER}/{self.request_id}"

    @property
    def staging(self) -> str:
        return f"{self.root}/staging"

    @property
    def screened(self) -> str:
        return f"{self.root}/screened"

    @property
    def package(self) -> str:
        return f"{self.root}/package"

    def staging_page(self, number: int) -> str:
        """Return the name of staged page ``number`` (from 1); names sort in page order."""
        return f"{self.staging}/{number:05d}.ndjson"
