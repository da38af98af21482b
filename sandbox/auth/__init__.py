"""OAuth 2.0: SMART Backend Services, SMART standalone launch and RFC 7591 registration."""
