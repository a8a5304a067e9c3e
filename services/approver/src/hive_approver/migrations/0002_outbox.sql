-- What committed changes must publish (events, spawner commands), written in the same transaction as the change:
-- the approver publishes each row in order and deletes it once JetStream has it. A crash in between loses nothing.
CREATE TABLE outbox (
    id      bigserial PRIMARY KEY,
    subject text NOT NULL,
    body    bytea NOT NULL,
    msg_id  text  -- a de-duplication id, where the stream is one only host services write (the spawner's queue)
);
