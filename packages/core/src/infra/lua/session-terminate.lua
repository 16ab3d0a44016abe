local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
if st == 'terminated' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'terminated', 'terminatedAt', ARGV[2], 'terminationReason', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
