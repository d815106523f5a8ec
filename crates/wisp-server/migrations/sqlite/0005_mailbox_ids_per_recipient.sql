-- Message ids counted per recipient, so an id says nothing about other
-- mailboxes (a global sequence told every user how many messages everyone
-- sent between two of theirs). Existing rows keep their ids, and each
-- mailbox's counter starts at its newest id, so ids only grow. (Delivery
-- cursors live in connections, which start from zero after the restart
-- that runs this.)
CREATE TABLE messages_v4 (
    recipient  BLOB NOT NULL,
    id         INTEGER NOT NULL,
    sender     BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    sent_ms    INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (recipient, id)
) STRICT;
INSERT INTO messages_v4 (recipient, id, sender, ciphertext, sent_ms, expires_ms)
    SELECT recipient, id, sender, ciphertext, sent_ms, expires_ms FROM messages;

-- The last id each mailbox handed out. Kept when the mailbox empties: a
-- connected reader's cursor may stand at it.
CREATE TABLE mailbox_sequences (
    recipient BLOB PRIMARY KEY,
    last_id   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO mailbox_sequences (recipient, last_id)
    SELECT recipient, max(id) FROM messages GROUP BY recipient;

-- A retry is recognised by sender, recipient and client id: the same client
-- id sent to another recipient is another message (as on the cluster
-- backend). Records whose message is already gone cannot be given their
-- recipient and go; they lived an hour at most.
CREATE TABLE sent_ids_v4 (
    client_msg_id BLOB NOT NULL,
    sender        BLOB NOT NULL,
    recipient     BLOB NOT NULL,
    message_id    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    PRIMARY KEY (client_msg_id, sender, recipient)
) STRICT, WITHOUT ROWID;
INSERT INTO sent_ids_v4 (client_msg_id, sender, recipient, message_id, expires_ms)
    SELECT s.client_msg_id, s.sender, m.recipient, s.message_id, s.expires_ms
    FROM sent_ids s JOIN messages m ON m.id = s.message_id AND m.sender = s.sender;
DROP TABLE sent_ids;
ALTER TABLE sent_ids_v4 RENAME TO sent_ids;
CREATE INDEX sent_ids_by_expiry ON sent_ids (expires_ms);

DROP TABLE messages;
ALTER TABLE messages_v4 RENAME TO messages;
CREATE INDEX messages_by_expiry ON messages (expires_ms);
