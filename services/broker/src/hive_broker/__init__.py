"""hyperhive broker: durable agent messaging over JetStream, with recipient policy and system messages."""

__version__ = "0.1.0"
