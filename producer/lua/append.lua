-- Append what a running prediction streamed (an output chunk, a line of logs) to its job's event
-- stream, once: Replicate's event ids are increasing, and an event at or before the last one
-- appended (a stream resumed after a worker died) is skipped. Fenced by the run token.
--
-- KEYS[1] predq:job:{id}   KEYS[2] predq:events:{id}
-- ARGV[1] run token   ARGV[2] Replicate's event id ("" = none)   ARGV[3] the event's type
-- ARGV[4] its data   ARGV[5] the stream's length
-- Returns ok, duplicate, missing, illegal (the job is not running) or stale.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'running' then return 'illegal' end
if redis.call('HGET', KEYS[1], 'run') ~= ARGV[1] then return 'stale' end
if ARGV[2] ~= '' then
  local last = tonumber(redis.call('HGET', KEYS[1], 'stream_last_id') or '')
  local this = tonumber(ARGV[2])
  if last and this and this <= last then return 'duplicate' end
  redis.call('HSET', KEYS[1], 'stream_last_id', ARGV[2])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 't', ARGV[3], 'd', ARGV[4])
return 'ok'
