"""hivetest: real nats-server and PostgreSQL for hyperhive's tests, as a pytest plugin (fixtures in `plugin`)."""
