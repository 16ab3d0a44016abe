local st = redis.call('HGET', KEYS[1], 'status')
if (not st) or st == 'terminated' or st == 'hibernated' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
return 1
