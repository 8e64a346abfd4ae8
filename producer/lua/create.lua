-- Create one job: its record, its state-index entry, its arq payload and queue entry, and (optionally)
-- its idempotency key, in one atomic step. With an idempotency key that still points at a record,
-- nothing is written and that record is returned instead. Safe to replay (redis-py resends a
-- script whose reply was lost): a job id that exists already is not written again.
--
-- KEYS[1] predq:job:{id}      KEYS[2] predq:state:queued   KEYS[3] the arq queue zset
-- KEYS[4] arq:job:{id}        KEYS[5] predq:events:{id}    KEYS[6] the queue's wake-sent key
-- KEYS[7] predq:idem:{hash} (optional)
-- ARGV[1] job id   ARGV[2] now (ms)   ARGV[3] arq payload   ARGV[4] idempotency window (s)
-- ARGV[5] the job key prefix   ARGV[6] the first event's data   ARGV[7] the event stream's length
-- ARGV[8] the queue's wake channel: idle workers are woken, at most once per ARGV[9] ms
-- ARGV[10..] record field/value pairs
-- Returns {"created"} or {"existing", field, value, ...}
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'created'}
end
local idem = KEYS[7]
if idem then
  local existing = redis.call('GET', idem)
  if existing then
    local record = redis.call('HGETALL', ARGV[5] .. existing)
    if #record > 0 then
      return {'existing', unpack(record)}
    end
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 10))
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', 't', 'state', 'd', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
-- No TTL: arq deletes its payload when the job ends; an expiring one would drop a live job.
redis.call('SET', KEYS[4], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
if idem then
  redis.call('SET', idem, ARGV[1], 'EX', ARGV[4])
end
if redis.call('SET', KEYS[6], '1', 'PX', ARGV[9], 'NX') then
  redis.call('PUBLISH', ARGV[8], '1')
end
return {'created'}
