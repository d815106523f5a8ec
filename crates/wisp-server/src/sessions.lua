-- An account's logged-in sessions across every node, for the sessions cap:
-- a sorted set of "<login time in µs, 16 digits>:<node>:<connection>" scored by
-- when its lease lapses (a node that dies stops renewing its sessions'
-- leases, and they drop out).
local sessions = KEYS[1]          -- sorted set: the account's sessions
local action = ARGV[1]            -- 'start', 'renew' or 'end'
local lease_ms = tonumber(ARGV[2])
-- start: ARGV[3] "<node>:<connection>", ARGV[4] the cap; replies the new
-- member, then the members over the cap (the oldest logins), now removed.
-- renew: ARGV[3..] members to keep. end: ARGV[3] the member to drop.

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', sessions, '-inf', now_ms)
local reply = {}
if action == 'start' then
  local member = string.format('%010d%06d', tonumber(time[1]), tonumber(time[2])) .. ':' .. ARGV[3]
  redis.call('ZADD', sessions, now_ms + lease_ms, member)
  reply[1] = member
  local all = redis.call('ZRANGE', sessions, 0, -1)
  local excess = #all - tonumber(ARGV[4])
  if excess > 0 then
    table.sort(all)
    for i = 1, excess do
      redis.call('ZREM', sessions, all[i])
      reply[#reply + 1] = all[i]
    end
  end
elseif action == 'renew' then
  for i = 3, #ARGV do
    redis.call('ZADD', sessions, 'XX', now_ms + lease_ms, ARGV[i])
  end
else
  redis.call('ZREM', sessions, ARGV[3])
end
if redis.call('ZCARD', sessions) > 0 then
  redis.call('PEXPIRE', sessions, lease_ms)
end
return reply
