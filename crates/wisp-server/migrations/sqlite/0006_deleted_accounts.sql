-- Account deletion. Nothing of a deleted account stays but one digest of
-- its id (SHA-256 under a label, see `store::tombstone`), so its keys can
-- never register again; the id itself appears nowhere.
CREATE TABLE deleted_accounts (
    digest BLOB PRIMARY KEY  -- 32 bytes
) STRICT, WITHOUT ROWID;
-- Deleting an account deletes the blocks others placed on it.
CREATE INDEX blocks_by_blocked ON blocks (blocked);
