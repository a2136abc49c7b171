-- A command's digest (libs.events.ids.command_digest) beside its first result, so a command id
-- reused for a different command is a conflict rather than a duplicate answer.
ALTER TABLE command_results ADD COLUMN command_digest text;

-- A memory one of whose events was dead-lettered no longer equals the fold of its events: it is
-- marked with the first such stream sequence and is not served as if nothing happened (queries
-- name the dead letter) until a replay, after a fix, rebuilds it.
ALTER TABLE memories ADD COLUMN diverged_seq bigint;
CREATE INDEX dead_letters_subject ON dead_letters (subject);
