-- Retry records keyed client id first. Clients make their ids start with
-- the time (wisp-client does), so new records land at the end of the key
-- instead of at a random page each: one page written per few dozen
-- messages rather than one per message. The sender stays in the key, so
-- one user's ids can never stand for another's messages.
CREATE TABLE sent_ids_v3 (
    client_msg_id BLOB NOT NULL,
    sender        BLOB NOT NULL,
    message_id    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    PRIMARY KEY (client_msg_id, sender)
) STRICT, WITHOUT ROWID;
INSERT INTO sent_ids_v3 (client_msg_id, sender, message_id, expires_ms)
    SELECT client_msg_id, sender, message_id, expires_ms FROM sent_ids;
DROP TABLE sent_ids;
ALTER TABLE sent_ids_v3 RENAME TO sent_ids;
CREATE INDEX sent_ids_by_expiry ON sent_ids (expires_ms);
