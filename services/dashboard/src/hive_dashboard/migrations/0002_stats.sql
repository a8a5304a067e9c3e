-- Stats samples from HIVE_STATS, written by the recorder (`recorder.py`): one row a figure. `agent` is `*` for the
-- hive-wide series (no agent name can be `*`). `seq` is the sample's stream sequence: a message delivered again
-- (a recorder killed after its commit, before its acknowledgement) has the same agent, key, time and sequence, so
-- `ON CONFLICT DO NOTHING` writes it once. The same key is the index of every read: one agent's one series over a
-- window is one range of it. `key` sorts bytewise (C), so a family (`tool.`) is a range too.

CREATE TABLE stats (
    agent text NOT NULL,
    key   text COLLATE "C" NOT NULL,
    ts    timestamptz NOT NULL,
    seq   bigint NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (agent, key, ts, seq)
);
-- Retention deletes by time alone; rows arrive in time order, so a BRIN index is a few pages for any size.
CREATE INDEX stats_ts ON stats USING brin (ts);
