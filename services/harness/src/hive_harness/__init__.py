"""hyperhive harness: the turn loop around the real `claude` CLI inside each agent's container (in progress)."""

__version__ = "0.1.0"
