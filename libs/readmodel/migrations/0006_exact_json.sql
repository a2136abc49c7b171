-- Metadata and event payloads are stored as `json` (the exact text), not `jsonb` (parsed into
-- numeric): jsonb turned 1e20 into the integer 100000000000000000000 and -0.0 into 0.0, so what a
-- query returned differed from what the event holds, and verification raised false alarms.
-- Rows projected before this migration keep whatever jsonb made of them; `mnemos replay`
-- rebuilds them exactly from the stream.
ALTER TABLE memories ALTER COLUMN metadata DROP DEFAULT;
ALTER TABLE memories ALTER COLUMN metadata TYPE json USING metadata::json;
ALTER TABLE memories ALTER COLUMN metadata SET DEFAULT '{}'::json;
ALTER TABLE memory_versions ALTER COLUMN metadata DROP DEFAULT;
ALTER TABLE memory_versions ALTER COLUMN metadata TYPE json USING metadata::json;
ALTER TABLE memory_versions ALTER COLUMN metadata SET DEFAULT '{}'::json;
ALTER TABLE memory_events ALTER COLUMN data TYPE json USING data::json;

-- (current with the keys of `changes` replaced) minus `removed`, keys in byte order. json_each
-- hands each value over as its original text, so numbers keep their exact spelling.
CREATE FUNCTION metadata_merge(current json, changes json, removed text[]) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(json_object_agg(merged.key, merged.value ORDER BY merged.key COLLATE "C"),
                    '{}'::json)
    FROM (
        SELECT c.key, c.value FROM json_each(current) AS c
        WHERE c.key NOT IN (SELECT json_object_keys(changes))
        UNION ALL
        SELECT s.key, s.value FROM json_each(changes) AS s
    ) AS merged
    WHERE NOT (merged.key = ANY (removed))
$$;
