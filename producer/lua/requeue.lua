-- Re-drive a failed job: same id, a fresh budget of attempts and recoveries, its error history
-- kept. The arq payload and queue entry (removed when the job finished) are written again. A job
-- that failed only because its output files could not be stored (field resume_prediction) keeps
-- its prediction: the next attempt copies its outputs again instead of paying for another one.
-- Refused while arq still holds the job (its worker has not finished it yet: arq would then
-- delete the new queue entry). Safe to replay (operation id).
--
-- KEYS[1] predq:job:{id}   KEYS[2] predq:state:failed   KEYS[3] predq:state:queued
-- KEYS[4] the arq queue    KEYS[5] arq:job:{id}        KEYS[6] arq:in-progress:{id}
-- KEYS[7] predq:events:{id}    KEYS[8] the queue's wake-sent key
-- ARGV[1] job id   ARGV[2] now (ms)   ARGV[3] now (ISO)   ARGV[4] arq payload   ARGV[5] operation id
-- ARGV[6] the state event's data   ARGV[7] the event stream's length
-- ARGV[8] the queue's wake channel (idle workers are woken, at most once per ARGV[9] ms)
-- Returns {status, current state}; status is ok, missing, illegal (not failed) or busy.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing', ''} end
if redis.call('HGET', KEYS[1], 'op') == ARGV[5] then return {'ok', 'failed'} end
if state ~= 'failed' then return {'illegal', state} end
if redis.call('EXISTS', KEYS[6]) == 1 then return {'busy', state} end
redis.call('HSET', KEYS[1], 'state', 'queued', 'updated_at', ARGV[3], 'op', ARGV[5],
  'attempt_base', redis.call('HGET', KEYS[1], 'attempts'), 'recoveries', 0)
redis.call('HINCRBY', KEYS[1], 'redrives', 1)
if redis.call('HDEL', KEYS[1], 'resume_prediction') == 0 then
  redis.call('HDEL', KEYS[1], 'prediction_id')
end
redis.call('HDEL', KEYS[1], 'output', 'files', 'metrics', 'callback', 'finished_at', 'create_unconfirmed_at',
  'resume', 'run', 'phase', 'progress')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[7])
redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[7], '*', 't', 'state', 'd', ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('SET', KEYS[5], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
if redis.call('SET', KEYS[8], '1', 'PX', ARGV[9], 'NX') then
  redis.call('PUBLISH', ARGV[8], '1')
end
return {'ok', state}
