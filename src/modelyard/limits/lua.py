"""The Lua scripts that make each Redis counter-store operation atomic.

Each script names every key it touches in KEYS, so with a hash-tagged prefix (`{modelyard}:`)
they also run on Redis Cluster. Times come from Redis `TIME`, in integer microseconds, so
replicas with skewed clocks agree. Lua numbers are doubles: counts stay below 2**53 (checked in
Python), and every number handed back to Redis goes through `int()`, because Redis would format
a bare number with 14 significant digits and lose a microsecond timestamp's last ones.
"""

from __future__ import annotations

_PRELUDE = """
local function int(x) return string.format('%d', x) end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# KEYS: reservation, settled marker, open index, owner's index, then one hash per budget.
# ARGV: id, owner, amount, budget keys as JSON, then per budget its limit and expiry (ms or '').
# Returns {0} reserved, {1} already open, {2} already settled, {3, budget index, remaining}.
RESERVE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {2} end
local amount = tonumber(ARGV[3])
local budgets = #KEYS - 4
for i = 1, budgets do
  local limit = tonumber(ARGV[3 + 2 * i])
  local counts = redis.call('HMGET', KEYS[4 + i], 'spent', 'reserved')
  local used = (tonumber(counts[1]) or 0) + (tonumber(counts[2]) or 0)
  if used + amount > limit then return {3, i, math.max(limit - used, 0)} end
end
for i = 1, budgets do
  redis.call('HINCRBY', KEYS[4 + i], 'reserved', ARGV[3])
  local expires = ARGV[4 + 2 * i]
  if expires ~= '' then redis.call('PEXPIREAT', KEYS[4 + i], expires) end
end
local created = int(clock())
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'amount', ARGV[3], 'budgets', ARGV[4],
  'created', created)
redis.call('ZADD', KEYS[3], created, ARGV[1])
redis.call('ZADD', KEYS[4], created, ARGV[1])
return {0}
"""
)

# KEYS: reservation, settled marker, open index, owner's index, then one hash per budget.
# ARGV: id, actual, owner and budgets as read beforehand, how long to remember the id (ms).
# Returns 1 settled, 0 not open, -1 the record is not the one read (read it again).
SETTLE = """
local record = redis.call('HMGET', KEYS[1], 'amount', 'owner', 'budgets')
if not record[1] then return 0 end
if record[2] ~= ARGV[3] or record[3] ~= ARGV[4] then return -1 end
local amount = record[1]
for i = 5, #KEYS do
  -- A budget whose window has ended is gone: count nothing there rather than revive it.
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if amount ~= '0' then redis.call('HINCRBY', KEYS[i], 'reserved', '-' .. amount) end
    redis.call('HINCRBY', KEYS[i], 'spent', ARGV[2])
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[5])
return 1
"""

# KEYS: per window its log (sorted set: request id by time), amounts (hash) and total (string).
# ARGV: request id, then per window its limit, length (µs) and this request's amount.
# Returns {1, remaining, reset (µs), ...} with a pair per window, or
# {0, window index, remaining, retry after (µs; -1 for never)} for the window that frees last.
ADMIT = (
    _PRELUDE
    + """
local now = clock()
local id = ARGV[1]
local windows = #KEYS / 3

local function prune(log, amounts, total, cutoff)
  while true do
    local expired = redis.call('ZRANGEBYSCORE', log, '-inf', int(cutoff), 'LIMIT', 0, 256)
    if #expired == 0 then return end
    local freed = 0
    for _, value in ipairs(redis.call('HMGET', amounts, unpack(expired))) do
      freed = freed + (tonumber(value) or 0)
    end
    redis.call('ZREM', log, unpack(expired))
    redis.call('HDEL', amounts, unpack(expired))
    redis.call('DECRBY', total, int(freed))
  end
end

-- When the oldest entries whose amounts add up to `excess` will have left the window.
local function retry_after(log, amounts, excess, window)
  local offset, freed = 0, 0
  while true do
    local entries = redis.call('ZRANGE', log, offset, offset + 255, 'WITHSCORES')
    if #entries == 0 then return 0 end
    local ids = {}
    for j = 1, #entries, 2 do ids[#ids + 1] = entries[j] end
    local values = redis.call('HMGET', amounts, unpack(ids))
    for j = 1, #ids do
      freed = freed + (tonumber(values[j]) or 0)
      if freed >= excess then return tonumber(entries[2 * j]) + window - now end
    end
    offset = offset + 256
  end
end

local used, present, refusal = {}, {}, nil
for i = 1, windows do
  local log, amounts, total = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local limit, window = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  prune(log, amounts, total, now - window)
  used[i] = tonumber(redis.call('GET', total)) or 0
  present[i] = redis.call('ZSCORE', log, id)
  if not present[i] and used[i] + amount > limit then
    local retry = -1
    if amount <= limit then retry = retry_after(log, amounts, used[i] + amount - limit, window) end
    if not refusal or (refusal[4] ~= -1 and (retry == -1 or retry > refusal[4])) then
      refusal = {0, i, math.max(limit - used[i], 0), retry}
    end
  end
end
if refusal then return refusal end

local result = {1}
for i = 1, windows do
  local log, amounts, total = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local limit, window = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local last = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
  local newest = tonumber(last[2]) or now
  if not present[i] then
    -- A log never goes back in time, even when the clock does.
    if now > newest then newest = now end
    redis.call('ZADD', log, int(newest), id)
    redis.call('HSET', amounts, id, ARGV[3 * i + 1])
    used[i] = redis.call('INCRBY', total, ARGV[3 * i + 1])
    local expires = int(math.ceil((newest + window) / 1000))
    redis.call('PEXPIREAT', log, expires)
    redis.call('PEXPIREAT', amounts, expires)
    redis.call('PEXPIREAT', total, expires)
  end
  result[#result + 1] = math.max(limit - used[i], 0)
  result[#result + 1] = newest + window - now
end
return result
"""
)

# KEYS: log, amounts, total. ARGV: request id, actual amount. Returns 1, or 0 if not logged.
ADJUST = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('INCRBY', KEYS[3], string.format('%d', tonumber(ARGV[2]) - tonumber(old)))
return 1
"""

# KEYS: leases (sorted set: lease id by expiry, µs). ARGV: lease id, cap, ttl (µs).
# Returns 1 held (taken or renewed), 0 at the cap.
ENTER = (
    _PRELUDE
    + """
local now = clock()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now))
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], int(now + tonumber(ARGV[3])), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], int(math.ceil(tonumber(last[2]) / 1000)))
return 1
"""
)

# KEYS: leases. ARGV: lease id. Returns 1 if a live lease was released.
LEAVE = (
    _PRELUDE
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(clock()))
return redis.call('ZREM', KEYS[1], ARGV[1])
"""
)
