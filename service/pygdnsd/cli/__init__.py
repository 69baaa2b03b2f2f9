"""Command-line entry points: ``gdnsd`` and ``gdnsdctl``."""
