-- Accounts: public identity keys only.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE accounts (
    user_id        BLOB PRIMARY KEY,            -- 20 bytes, hash of ed25519_key
    ed25519_key    BLOB NOT NULL UNIQUE,        -- 32 bytes
    curve25519_key BLOB NOT NULL,               -- 32 bytes
    created_ms     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- A friendship is stored once per side, so "my friends" and "how many" are
-- one index range each.
CREATE TABLE friends (
    owner    BLOB NOT NULL REFERENCES accounts(user_id),
    friend   BLOB NOT NULL REFERENCES accounts(user_id),
    since_ms INTEGER NOT NULL,
    PRIMARY KEY (owner, friend)
) STRICT, WITHOUT ROWID;

CREATE TABLE friend_requests (
    from_user  BLOB NOT NULL REFERENCES accounts(user_id),
    to_user    BLOB NOT NULL REFERENCES accounts(user_id),
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (from_user, to_user)
) STRICT, WITHOUT ROWID;
CREATE INDEX friend_requests_by_recipient ON friend_requests (to_user, from_user);

CREATE TABLE blocks (
    owner      BLOB NOT NULL REFERENCES accounts(user_id),
    blocked    BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (owner, blocked)
) STRICT, WITHOUT ROWID;
