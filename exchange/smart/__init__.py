"""SMART authorization at former payers: discovery, registration, Backend Services, member launch."""
