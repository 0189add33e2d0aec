"""The decoding engine: the sampling rule, the decode loops and the native forwards (torch only)."""
