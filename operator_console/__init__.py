"""The hub operators' console (Django admin at /operator/): payers and their lifecycle, the
onboarding queue, users per payer, exchange requests as metadata, and the audit log.

Named ``operator_console``, not ``operator``: a top-level ``operator`` package would shadow
the standard library's ``operator`` module, which Django itself imports.
"""
