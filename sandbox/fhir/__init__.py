"""The FHIR R4 API of the sandbox payer."""
