"""hyperhive spawner: the only component that touches agents' files on the host or runs their containers."""

__version__ = "0.1.0"
