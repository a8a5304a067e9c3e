-- Stats samples from HIVE_STATS, written by the recorder (`recorder.py`): one row a figure. `agent` is `*` for the
-- hive-wide series (no agent name can be `*`). `key` sorts bytewise (C), so a family (`tool.`) is a range of the
-- series index too; one agent's one series over a window is one range of it.

CREATE TABLE stats (
    agent text NOT NULL,
    ts    timestamptz NOT NULL,
    key   text COLLATE "C" NOT NULL,
    value double precision NOT NULL
);
-- The value is in the index too: a read is an index-only scan (a few pages), not one heap page per row, since
-- rows of one series are spread over the heap among everyone else's written at the same time.
CREATE INDEX stats_series ON stats (agent, key, ts) INCLUDE (value);
-- Retention deletes by time alone; rows arrive in time order, so a BRIN index is a few pages for any size.
CREATE INDEX stats_ts ON stats USING brin (ts);

-- Which stream messages are written: a message delivered again (a recorder killed after its commit, before its
-- acknowledgement) is found here in the same transaction, and its rows are not written twice. Its stored time is
-- part of the key, so a stream made anew (sequences from 1 again) is not taken for what was written before.
CREATE TABLE stats_samples (
    seq bigint NOT NULL,
    ts  timestamptz NOT NULL,
    PRIMARY KEY (seq, ts)
);
CREATE INDEX stats_samples_ts ON stats_samples USING brin (ts);
