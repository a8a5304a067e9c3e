"""hivectl: the operator's command line over NATS, and `hivectl up`, the one-command local hive."""
