local t = tonumber(redis.call('HGET', KEYS[1], 'turn') or '0')
if t <= tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'turn', tonumber(ARGV[1]) + 1) end return 1
