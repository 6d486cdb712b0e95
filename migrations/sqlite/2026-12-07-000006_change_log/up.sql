-- What each write that can change a cached answer changed, written in the write's own
-- transaction. Every process reads the rows past the last one it applied whenever
-- PRAGMA data_version says something was committed, and invalidates only the cache entries
-- those rows name ('*' names everything). AUTOINCREMENT: a sequence number is never reused, even
-- after the oldest rows are pruned, so a reader that finds a gap knows it missed something.
CREATE TABLE change_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tags TEXT NOT NULL,
    recorded_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
