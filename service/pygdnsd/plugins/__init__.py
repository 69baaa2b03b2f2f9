"""Resolver plugins behind DYNA and DYNC records."""
