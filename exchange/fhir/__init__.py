"""The one FHIR client of the exchange engine (STYLE.md #13), its errors, and capability reading."""
