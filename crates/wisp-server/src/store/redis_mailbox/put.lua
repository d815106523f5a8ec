-- Stores one message in a recipient's mailbox, or recognises a retry.
-- Every key shares the recipient's hash tag, so the script runs on one slot.
local sequence = KEYS[1]     -- string: the mailbox's last message id
local waiting = KEYS[2]      -- sorted set: waiting message ids, scored by id
local retry_record = KEYS[3] -- string "<id>:<expires_ms>": this client message id's first put
local pending = KEYS[4]      -- sorted set: this sender's waiting ids, scored by expiry
local closed = KEYS[5]       -- string: present while the conversation is closed
local sender = ARGV[1]       -- hex user id of the sender
local ciphertext = ARGV[2]   -- opaque bytes
local sent_ms = ARGV[3]      -- when the server accepted it (Unix ms)
local expires_ms = ARGV[4]   -- when it must be gone (Unix ms)
local message_prefix = ARGV[5] -- "<mailbox>:m:", the message hash's key without its id
local max_pending = tonumber(ARGV[6]) -- how many of the sender's messages may wait

-- Replies: {0, "<id>:<expires_ms>"} stored; {1, same} a retry of a stored
-- message; {2, ''} the sender's quota is full; {3, ''} the conversation is closed.
local first = redis.call('GET', retry_record)
if first then return {1, first} end
if redis.call('EXISTS', closed) == 1 then return {3, ''} end
if redis.call('ZCOUNT', pending, '(' .. sent_ms, '+inf') >= max_pending then
  return {2, ''}
end
-- Ids are at least the server's time in microseconds, so after a failover
-- that lost the newest unreplicated puts no id is handed out twice.
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
local id = redis.call('INCR', sequence)
if id < floor then
  id = floor
  redis.call('SET', sequence, string.format('%d', id))
end
id = string.format('%d', id)
local message = message_prefix .. id
redis.call('HSET', message, 's', sender, 'c', ciphertext, 't', sent_ms, 'e', expires_ms)
redis.call('PEXPIREAT', message, expires_ms)
redis.call('ZADD', waiting, id, id)
redis.call('ZADD', pending, expires_ms, id)
redis.call('SET', retry_record, id .. ':' .. expires_ms, 'PXAT', expires_ms)
return {0, id .. ':' .. expires_ms}
