-- Field updates go through Lua so a touch can never bring a terminated session back.
local st = redis.call('HGET', KEYS[1], 'status')
if (not st) or st == 'terminated' or st == 'hibernated' then return 0 end
local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttlSeconds'))
local now = tonumber(ARGV[1])
local exp = now + ttl * 1000
redis.call('HSET', KEYS[1], 'lastActiveAt', now, 'expiresAt', exp)
redis.call('ZADD', KEYS[2], exp, ARGV[2])
return 1
