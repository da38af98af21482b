"""The signal that a request stopped (withdrawn, cancelled) while one of its steps ran.

A step notices when it can no longer record its progress: the conditional UPDATE that
records it matches no row, because the request has left the step's state (STYLE.md #4).
That is no failure of the step: the request already ended as the member or the plan
administrator chose, so the task stops quietly, neither retried nor ``failed``.
"""


class RequestStopped(Exception):
    """The request left the state the step works in while the step ran: stop quietly."""
