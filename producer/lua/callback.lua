-- Record a completion callback's delivery attempt on its job, and reschedule or finish it in the
-- outbox, in one step. A job whose record expired leaves the outbox.
--
-- KEYS[1] predq:job:{id}   KEYS[2] predq:callbacks
-- ARGV[1] job id   ARGV[2] the callback's state (JSON)   ARGV[3] "" (done) or when it is due again (ms)
-- Returns ok or missing.
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 'missing'
end
redis.call('HSET', KEYS[1], 'callback', ARGV[2])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
return 'ok'
