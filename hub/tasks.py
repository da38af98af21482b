"""Housekeeping tasks of the foundation (queue ``default``); each calls one service."""

from celery import shared_task

from hub.signing_keys import signing_keys_retire_expired


@shared_task(name="hub.retire_expired_signing_keys")
def retire_expired_signing_keys() -> int:
    """Stop publishing rotated signing keys whose grace period is over (run daily by beat)."""
    return signing_keys_retire_expired()
