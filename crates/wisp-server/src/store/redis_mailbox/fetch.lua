-- Reads a page of a recipient's mailbox in one round trip: up to `limit`
-- ids after the cursor, oldest first, each with its message. Ids whose
-- message Redis has already expired are dropped from the set.
local waiting = KEYS[1]        -- sorted set: waiting message ids, scored by id
local message_prefix = KEYS[2] -- "<mailbox>:m:", a message hash's key without its id
local fence = KEYS[3]          -- string: written when replicas must hold what is read
local after = ARGV[1]          -- the cursor: ids above it
local limit = ARGV[2]          -- at most this many
local fence_ms = ARGV[3]       -- '0' without replicas; else how long the fence lives

-- Reply: for each message, its id, sender, ciphertext, sent and expiry
-- times (Unix ms), one after the other; a message missing a field is left
-- out (the caller checks expiry again).
local page = {}
local gone = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', waiting, '(' .. after, '+inf', 'LIMIT', 0, limit)) do
  local fields = redis.call('HMGET', message_prefix .. id, 's', 'c', 't', 'e')
  if not fields[1] then
    table.insert(gone, id)
  elseif fields[2] and fields[3] and fields[4] then
    table.insert(page, id)
    table.insert(page, fields[1])
    table.insert(page, fields[2])
    table.insert(page, fields[3])
    table.insert(page, fields[4])
  end
end
if #gone > 0 then redis.call('ZREM', waiting, unpack(gone)) end
-- A write after the reads, for the caller's WAIT to cover them.
if fence_ms ~= '0' and #page > 0 then
  redis.call('SET', fence, #page, 'PX', fence_ms)
end
return page
