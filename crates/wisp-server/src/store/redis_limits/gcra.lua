-- One event against a rate limit shared by every node: GCRA (the generic
-- cell rate algorithm) on one key holding the theoretical arrival time of
-- the next event, in microseconds of the Redis server's clock (the one
-- clock every node shares).
local key = KEYS[1]                    -- string: the theoretical arrival time (µs)
local interval = tonumber(ARGV[1])     -- µs between events at the sustained rate
local tolerance = tonumber(ARGV[2])    -- µs the arrival time may run ahead (the burst)
-- Replies: 0 the event passes; otherwise the µs until one would.

local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local tat = tonumber(redis.call('GET', key) or '0')
if tat < now then tat = now end
local ahead = tat - now
if ahead > tolerance then return ahead - tolerance end
tat = tat + interval
-- The key goes once the allowance is whole again: it then says nothing.
redis.call('SET', key, string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return 0
