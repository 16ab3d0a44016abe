-- Claims an expired, idle session for the reaper: exactly one caller gets 1.
local st = redis.call('HGET', KEYS[1], 'status')
if (not st) or st == 'terminated' then redis.call('ZREM', KEYS[2], ARGV[1]) return 0 end
if st == 'busy' then return 0 end
local exp = tonumber(redis.call('HGET', KEYS[1], 'expiresAt'))
if exp > tonumber(ARGV[2]) then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])
