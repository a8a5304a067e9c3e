"""hyperhive shared core: the wire contract, the NATS bus, settings, identity and migrations."""
