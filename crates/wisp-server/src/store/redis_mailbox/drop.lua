-- Deletes every message one sender has waiting in a recipient's mailbox and
-- closes the conversation to that sender's puts for a while. Returns how
-- many messages were deleted.
local pending = KEYS[1]        -- sorted set: the sender's waiting ids, scored by expiry
local waiting = KEYS[2]        -- sorted set: all waiting message ids, scored by id
local message_prefix = KEYS[3] -- "<mailbox>:m:", a message hash's key without its id
local closed = KEYS[4]         -- string: present while the conversation is closed
local closed_for_ms = ARGV[1]  -- how long it stays closed unless reopened

local dropped = 0
for _, id in ipairs(redis.call('ZRANGE', pending, 0, -1)) do
  redis.call('ZREM', waiting, id)
  dropped = dropped + redis.call('DEL', message_prefix .. id)
end
redis.call('DEL', pending)
redis.call('SET', closed, '1', 'PX', closed_for_ms)
return dropped
