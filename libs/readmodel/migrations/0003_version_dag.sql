-- The version DAG of memories (design section 6): named branches and how each version came to be.
-- memories.head_version_id / content stay those of branch "main".

-- How a version was made: 'create' | 'revise' | 'commit' | 'merge' | 'revert'. The branch it was
-- recorded on, the merge strategy and base, and the revert target are facts of the event that
-- created it; none of them is part of the content-addressed version id.
ALTER TABLE memory_versions
    ADD COLUMN origin          text NOT NULL DEFAULT 'revise',
    ADD COLUMN branch          text NOT NULL DEFAULT 'main',
    ADD COLUMN strategy        text,
    ADD COLUMN base_version_id text,
    ADD COLUMN reverted_to     text;
UPDATE memory_versions SET origin = 'create' WHERE cardinality(parent_ids) = 0;

-- A branch is a name pointing at a head version of its memory.
--  * It belongs to its memory: deleting the memory row deletes its branches (CASCADE).
--  * Its head must be a version of the same memory, and a version that is a head cannot be
--    deleted on its own (NO ACTION, checked at the end of the statement, so deleting the whole
--    memory, which cascades to both tables in one statement, still works).
CREATE TABLE memory_branches (
    ns               text        NOT NULL,
    memory_id        text        NOT NULL,
    branch           text        NOT NULL,
    head_version_id  text        NOT NULL,
    from_version_id  text        NOT NULL,  -- where the branch was created
    created_seq      bigint      NOT NULL,
    updated_seq      bigint      NOT NULL,  -- stream seq of the event that last moved the head
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    updated_by       jsonb       NOT NULL,
    PRIMARY KEY (ns, memory_id, branch),
    FOREIGN KEY (ns, memory_id) REFERENCES memories (ns, memory_id) ON DELETE CASCADE,
    FOREIGN KEY (ns, memory_id, head_version_id)
        REFERENCES memory_versions (ns, memory_id, version_id) ON DELETE NO ACTION
);

-- Existing memories get their "main" branch at their head, with exactly the values a replay of
-- their events would project.
INSERT INTO memory_branches (ns, memory_id, branch, head_version_id, from_version_id,
                             created_seq, updated_seq, created_at, updated_at, updated_by)
SELECT m.ns, m.memory_id, 'main', h.version_id, r.version_id, r.seq, h.seq,
       r.created_at, h.created_at, h.actor
FROM memories m
JOIN memory_versions r
  ON r.ns = m.ns AND r.memory_id = m.memory_id AND cardinality(r.parent_ids) = 0
JOIN memory_versions h
  ON h.ns = m.ns AND h.memory_id = m.memory_id AND h.version_id = m.head_version_id;
