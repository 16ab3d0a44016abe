-- Back into the expiry index at the recorded expiry, unless the session has ended meanwhile.
local st = redis.call('HGET', KEYS[1], 'status')
if (not st) or st == 'terminated' then return 0 end
redis.call('ZADD', KEYS[2], tonumber(redis.call('HGET', KEYS[1], 'expiresAt')), ARGV[1])
return 1
