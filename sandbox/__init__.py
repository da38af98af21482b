"""A sandbox payer: a standalone FHIR data holder and identity provider for demos and tests."""
