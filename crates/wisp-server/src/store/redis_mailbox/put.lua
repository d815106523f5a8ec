-- Stores one message in a recipient's mailbox, or recognises a retry (sent
-- after outbox_lib.lua). Every mailbox key shares the recipient's hash tag,
-- so on a Redis Cluster the script runs on one slot; on one Redis server it
-- is also given the sender's outbox (KEYS[8] and KEYS[9]) and reserves the
-- message's room there itself.
local sequence = KEYS[1]     -- string: the mailbox's last message id
local waiting = KEYS[2]      -- sorted set: waiting message ids, scored by id
local retry_record = KEYS[3] -- string "<id>:<expires_ms>": this client message id's first put
local pending = KEYS[4]      -- sorted set: this sender's waiting ids, scored by expiry
local closed = KEYS[5]       -- string: present while the conversation is closed
local sizes = KEYS[6]        -- sorted set: "<id>:<bytes>" of every waiting message, scored by expiry
local stored_bytes = KEYS[7] -- string: the bytes of the members of `sizes`
local sender = ARGV[1]       -- hex user id of the sender
local ciphertext = ARGV[2]   -- opaque bytes
local sent_ms = ARGV[3]      -- when the server accepted it (Unix ms)
local expires_ms = ARGV[4]   -- when it must be gone (Unix ms)
local message_prefix = ARGV[5] -- "<mailbox>:m:", the message hash's key without its id
local max_pending = tonumber(ARGV[6]) -- how many of the sender's messages may wait
local max_bytes = tonumber(ARGV[7])   -- how many bytes may wait in the mailbox
local outbox_member = ARGV[8] -- the message's entry in the sender's outbox
local outbox_cap = tonumber(ARGV[9]) -- with KEYS[8], the outbox's cap in bytes
local outbox_entries = KEYS[8] -- optional: the sender's outbox entries (see outbox_lib.lua)
local outbox_total = KEYS[9]   -- optional: their sum

-- Replies: {0, "<id>:<expires_ms>"} stored; {1, same} a retry of a stored
-- message; {2, ''} the sender's quota is full; {3, ''} the conversation is
-- closed; {4, ''} the mailbox's bytes are full; {5, ''} the sender's
-- outbox is full (with the outbox keys only).
local first = redis.call('GET', retry_record)
if first then return {1, first} end
if redis.call('EXISTS', closed) == 1 then return {3, ''} end
if redis.call('ZCOUNT', pending, '(' .. sent_ms, '+inf') >= max_pending then
  return {2, ''}
end
-- What expired no longer counts (Redis deleted the messages themselves).
local bytes = tonumber(redis.call('GET', stored_bytes) or '0')
local expired = redis.call('ZRANGEBYSCORE', sizes, '-inf', sent_ms)
for _, entry in ipairs(expired) do
  bytes = bytes - tonumber(string.match(entry, ':(%d+)$'))
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', sizes, '-inf', sent_ms) end
if bytes < 0 then bytes = 0 end
local size = string.len(ciphertext)
if bytes + size > max_bytes then
  redis.call('SET', stored_bytes, string.format('%d', bytes))
  return {4, ''}
end
-- The last check, so a refusal above reserves nothing.
if outbox_entries then
  local reserved = outbox_reserve(outbox_entries, outbox_total, sent_ms, outbox_member,
    expires_ms, outbox_cap)
  if reserved == 0 then return {5, ''} end
end
-- Ids count up per mailbox from at least the server's time in seconds
-- times 2^20, so after a failover that lost the newest unreplicated puts
-- no id is handed out twice, while within a second they run 1, 2, 3
-- whatever other mailboxes do.
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1048576
local id = redis.call('INCR', sequence)
if id < floor then
  id = floor
  redis.call('SET', sequence, string.format('%d', id))
end
id = string.format('%d', id)
local message = message_prefix .. id
redis.call('HSET', message, 's', sender, 'c', ciphertext, 't', sent_ms, 'e', expires_ms,
  'o', outbox_member)
redis.call('PEXPIREAT', message, expires_ms)
redis.call('ZADD', waiting, id, id)
redis.call('ZADD', pending, expires_ms, id)
redis.call('ZADD', sizes, expires_ms, id .. ':' .. size)
redis.call('SET', stored_bytes, string.format('%d', bytes + size))
redis.call('SET', retry_record, id .. ':' .. expires_ms, 'PXAT', expires_ms)
return {0, id .. ':' .. expires_ms}
