"""sharing-audit: the domain core and its adapters."""

__version__ = "0.1.0"
