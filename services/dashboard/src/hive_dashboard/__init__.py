"""hyperhive dashboard: the operator's live control room."""

__version__ = "0.1.0"
