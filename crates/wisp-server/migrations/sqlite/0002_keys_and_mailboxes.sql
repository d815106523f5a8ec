-- The Ed25519 signature that vouches for each account's Curve25519 key.
ALTER TABLE accounts ADD COLUMN identity_signature BLOB NOT NULL DEFAULT x'';

-- One-time keys: handed out once, deleted as they are claimed.
CREATE TABLE one_time_keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    owner      BLOB NOT NULL REFERENCES accounts(user_id),
    public_key BLOB NOT NULL,
    signature  BLOB NOT NULL,
    UNIQUE (owner, public_key)
) STRICT;

-- The fallback key, used when no one-time key is left; replaced, not claimed.
CREATE TABLE fallback_keys (
    owner      BLOB PRIMARY KEY REFERENCES accounts(user_id),
    public_key BLOB NOT NULL,
    signature  BLOB NOT NULL
) STRICT, WITHOUT ROWID;

-- Mailboxes: ciphertext plus the routing fields delivery needs, nothing
-- more. AUTOINCREMENT: ids are never reused, so a delivery cursor never
-- skips a message.
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient  BLOB NOT NULL,
    sender     BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    sent_ms    INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_by_recipient ON messages (recipient, id);
CREATE INDEX messages_by_expiry ON messages (expires_ms);

-- Client message ids already accepted, kept until the message's expiry so a
-- retry is answered, not stored twice, even after the message burned.
CREATE TABLE sent_ids (
    sender        BLOB NOT NULL,
    client_msg_id BLOB NOT NULL,
    message_id    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    PRIMARY KEY (sender, client_msg_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX sent_ids_by_expiry ON sent_ids (expires_ms);
