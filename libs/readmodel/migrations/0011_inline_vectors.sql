-- Keep a memory's vector in its row. A 384-float vector is 1,540 bytes, so with its content,
-- metadata and tsvector a memory row passes the default 2 kB toast threshold and the vector
-- (pgvector stores it EXTERNAL, never compressed) went to the TOAST table: every insert wrote
-- two heap rows and a TOAST index entry, and every read of a vector joined them back. Rows up
-- to a page now stay whole; longer contents are still toasted first (they are the largest
-- column). Existing rows keep their layout until they are rewritten.
ALTER TABLE memories SET (toast_tuple_target = 8160);
ALTER TABLE embedding_cache SET (toast_tuple_target = 8160);
