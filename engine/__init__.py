"""wattload's load engine: everything that measures, with no UI code (tests prove textual is never imported)."""

__version__ = "0.1.0"
