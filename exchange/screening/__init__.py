"""Screening: the one module that decides what leaves the hub (ARCHITECTURE.md step 5).

``screening_run`` streams a request's staged record through ``decision.resource_screen``
(``ScreeningRun`` one page at a time, as retrieval stages them); each rule lives in its own
module with its citation.
"""

from exchange.screening.reasons import RemovalReason
from exchange.screening.result import ScreeningResult, screening_result_read
from exchange.screening.service import ScreeningRun, screening_complete, screening_run

__all__ = [
    "RemovalReason",
    "ScreeningResult",
    "ScreeningRun",
    "screening_complete",
    "screening_result_read",
    "screening_run",
]
