-- Listed only by the holder of a live slot, so a creation that overran its slot is never listed.
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[2])
return 1
