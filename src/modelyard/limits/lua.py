"""The Lua scripts that make each Redis counter-store operation atomic.

Each script names every key it touches in KEYS, so with a hash-tagged prefix (`{modelyard}:`)
they also run on Redis Cluster. Times come from Redis `TIME`, in integer microseconds, so
replicas with skewed clocks agree. Lua numbers are doubles: counts stay below 2**53 (checked in
Python), and every number handed back to Redis goes through `int()`, because Redis would format
a bare number with 14 significant digits and lose a microsecond timestamp's last ones.

Each part (leases, sliding logs, budgets) is a set of Lua functions that check without changing
a counter, or change without checking; a script is its parts' functions and a few lines that
call them. So `ADMIT_REQUEST` checks every step before it takes any, and is all-or-nothing
without undoing anything.
"""

from __future__ import annotations

_PRELUDE = """
local function int(x) return string.format('%d', x) end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# A reservation's keys are four from KEYS[r + 1]: its record (hash: owner, amount, budgets,
# created), its settled marker, the open index, its owner's index. Its budgets are `n` hashes
# from KEYS[b + 1], with their limit and expiry (ms or '') in pairs from ARGV[a + 1].
_BUDGETS = """
-- 1 already open, 2 settled a while ago, 0 neither.
local function reservation_status(r)
  if redis.call('EXISTS', KEYS[r + 1]) == 1 then return 1 end
  if redis.call('EXISTS', KEYS[r + 2]) == 1 then return 2 end
  return 0
end

-- The first budget that cannot hold `amount` more, as {index, remaining}; nil when all can.
local function budget_refusal(n, b, a, amount)
  for i = 1, n do
    local limit = tonumber(ARGV[a + 2 * i - 1])
    local counts = redis.call('HMGET', KEYS[b + i], 'spent', 'reserved')
    local used = (tonumber(counts[1]) or 0) + (tonumber(counts[2]) or 0)
    if used + amount > limit then return {i, math.max(limit - used, 0)} end
  end
  return nil
end

-- `amount` is the argument string, handed to Redis as it came.
local function hold(r, n, b, a, id, owner, amount, budgets, now)
  for i = 1, n do
    redis.call('HINCRBY', KEYS[b + i], 'reserved', amount)
    local expires = ARGV[a + 2 * i]
    if expires ~= '' then redis.call('PEXPIREAT', KEYS[b + i], expires) end
  end
  local created = int(now)
  redis.call('HSET', KEYS[r + 1], 'owner', owner, 'amount', amount, 'budgets', budgets,
    'created', created)
  redis.call('ZADD', KEYS[r + 3], created, id)
  redis.call('ZADD', KEYS[r + 4], created, id)
end

-- Settle with the owner and budgets read beforehand; its budgets are KEYS[r + 5 .. last].
-- 1 settled, 0 not open, -1 the record is not the one read (read it again).
local function settle(r, last, id, actual, owner, budgets, remember_ms)
  local record = redis.call('HMGET', KEYS[r + 1], 'amount', 'owner', 'budgets')
  if not record[1] then return 0 end
  if record[2] ~= owner or record[3] ~= budgets then return -1 end
  local amount = record[1]
  for i = r + 5, last do
    -- A budget whose window has ended is gone: count nothing there rather than revive it.
    if redis.call('EXISTS', KEYS[i]) == 1 then
      if amount ~= '0' then redis.call('HINCRBY', KEYS[i], 'reserved', '-' .. amount) end
      redis.call('HINCRBY', KEYS[i], 'spent', actual)
    end
  end
  redis.call('DEL', KEYS[r + 1])
  redis.call('ZREM', KEYS[r + 3], id)
  redis.call('ZREM', KEYS[r + 4], id)
  redis.call('SET', KEYS[r + 2], '1', 'PX', remember_ms)
  return 1
end
"""

# KEYS: reservation, settled marker, open index, owner's index, then one hash per budget.
# ARGV: id, owner, amount, budget keys as JSON, then per budget its limit and expiry (ms or '').
# Returns {0} reserved, {1} already open, {2} already settled, {3, budget index, remaining}.
RESERVE = (
    _PRELUDE
    + _BUDGETS
    + """
local status = reservation_status(0)
if status ~= 0 then return {status} end
local budgets = #KEYS - 4
local refusal = budget_refusal(budgets, 4, 4, tonumber(ARGV[3]))
if refusal then return {3, refusal[1], refusal[2]} end
hold(0, budgets, 4, 4, ARGV[1], ARGV[2], ARGV[3], ARGV[4], clock())
return {0}
"""
)

# KEYS: reservation, settled marker, open index, owner's index, then one hash per budget.
# ARGV: id, actual, owner and budgets as read beforehand, how long to remember the id (ms).
# Returns 1 settled, 0 not open, -1 the record is not the one read (read it again).
SETTLE = (
    _PRELUDE
    + _BUDGETS
    + """
return settle(0, #KEYS, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""
)

# KEYS: per settlement its four reservation keys, then its budgets' hashes.
# ARGV: how long to remember an id (ms), then per settlement: id, actual, owner and budgets as
# read beforehand, and how many budgets. Returns SETTLE's answer for each, in order.
SETTLE_MANY = (
    _PRELUDE
    + _BUDGETS
    + """
local answers, r = {}, 0
for a = 2, #ARGV, 5 do
  local last = r + 4 + tonumber(ARGV[a + 4])
  answers[#answers + 1] = settle(r, last, ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[1])
  r = last
end
return answers
"""
)

# A request's windows are `n` triples of keys from KEYS[w + 1]: its log (sorted set: request id
# by time logged, µs), amounts (hash: request id -> amount) and total (string); and `n` triples
# of arguments from ARGV[a + 1]: limit, length (µs) and this request's amount.
_LOGS = """
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
local function retry_after(log, amounts, excess, window, now)
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

-- Prunes the logs (which changes no answer), then finds the window that frees up last among
-- those refusing, as {index, remaining, retry after (µs; -1 for never)}. Also returns what
-- `log_request` needs: each window's total and whether the request is already in it.
local function rate_refusal(n, w, a, id, now)
  local used, present, refusal = {}, {}, nil
  for i = 1, n do
    local log, amounts, total = KEYS[w + 3 * i - 2], KEYS[w + 3 * i - 1], KEYS[w + 3 * i]
    local limit, window = tonumber(ARGV[a + 3 * i - 2]), tonumber(ARGV[a + 3 * i - 1])
    local amount = tonumber(ARGV[a + 3 * i])
    prune(log, amounts, total, now - window)
    used[i] = tonumber(redis.call('GET', total)) or 0
    present[i] = redis.call('ZSCORE', log, id)
    if not present[i] and used[i] + amount > limit then
      local retry = -1
      if amount <= limit then
        retry = retry_after(log, amounts, used[i] + amount - limit, window, now)
      end
      if not refusal or (refusal[3] ~= -1 and (retry == -1 or retry > refusal[3])) then
        refusal = {i, math.max(limit - used[i], 0), retry}
      end
    end
  end
  return refusal, used, present
end

-- Logs the request where it is not yet, and appends remaining and reset (µs) per window.
local function log_request(n, w, a, id, now, used, present, result)
  for i = 1, n do
    local log, amounts, total = KEYS[w + 3 * i - 2], KEYS[w + 3 * i - 1], KEYS[w + 3 * i]
    local limit, window = tonumber(ARGV[a + 3 * i - 2]), tonumber(ARGV[a + 3 * i - 1])
    local last = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')
    local newest = tonumber(last[2]) or now
    if not present[i] then
      -- A log never goes back in time, even when the clock does.
      if now > newest then newest = now end
      redis.call('ZADD', log, int(newest), id)
      redis.call('HSET', amounts, id, ARGV[a + 3 * i])
      used[i] = redis.call('INCRBY', total, ARGV[a + 3 * i])
      local expires = int(math.ceil((newest + window) / 1000))
      redis.call('PEXPIREAT', log, expires)
      redis.call('PEXPIREAT', amounts, expires)
      redis.call('PEXPIREAT', total, expires)
    end
    result[#result + 1] = math.max(limit - used[i], 0)
    result[#result + 1] = newest + window - now
  end
  return result
end

-- Replace the amount logged for the request: 1, or 0 if it is not logged (any more).
local function adjust(amounts, total, id, actual)
  local old = redis.call('HGET', amounts, id)
  if not old then return 0 end
  redis.call('HSET', amounts, id, actual)
  redis.call('INCRBY', total, int(tonumber(actual) - tonumber(old)))
  return 1
end
"""

# KEYS: per window its log, amounts and total.
# ARGV: request id, then per window its limit, length (µs) and this request's amount.
# Returns {1, remaining, reset (µs), ...} with a pair per window, or
# {0, window index, remaining, retry after (µs; -1 for never)} for the window that frees last.
ADMIT = (
    _PRELUDE
    + _LOGS
    + """
local now = clock()
local windows = #KEYS / 3
local refusal, used, present = rate_refusal(windows, 0, 1, ARGV[1], now)
if refusal then return {0, refusal[1], refusal[2], refusal[3]} end
return log_request(windows, 0, 1, ARGV[1], now, used, present, {1})
"""
)

# KEYS: log, amounts, total. ARGV: request id, actual amount. Returns 1, or 0 if not logged.
ADJUST = (
    _PRELUDE
    + _LOGS
    + """
return adjust(KEYS[2], KEYS[3], ARGV[1], ARGV[2])
"""
)

# A key's leases: a sorted set of lease ids by expiry (µs).
_LEASES = """
-- Drops the expired leases (which changes no answer); true if the lease is held or fits.
local function lease_fits(leases, id, cap, now)
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', int(now))
  return redis.call('ZSCORE', leases, id) or redis.call('ZCARD', leases) < cap
end

local function take_lease(leases, id, ttl, now)
  redis.call('ZADD', leases, int(now + ttl), id)
  local last = redis.call('ZRANGE', leases, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', leases, int(math.ceil(tonumber(last[2]) / 1000)))
end

-- 1 if a live lease was released.
local function leave(leases, id, now)
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', int(now))
  return redis.call('ZREM', leases, id)
end
"""

# KEYS: leases. ARGV: lease id, cap, ttl (µs).
# Returns 1 held (taken or renewed), 0 at the cap.
ENTER = (
    _PRELUDE
    + _LEASES
    + """
local now = clock()
if not lease_fits(KEYS[1], ARGV[1], tonumber(ARGV[2]), now) then return 0 end
take_lease(KEYS[1], ARGV[1], tonumber(ARGV[3]), now)
return 1
"""
)

# KEYS: leases. ARGV: lease id. Returns 1 if a live lease was released.
LEAVE = (
    _PRELUDE
    + _LEASES
    + """
return leave(KEYS[1], ARGV[1], clock())
"""
)

# The lease, windows and reservation of one request, all or nothing; the request id is the
# lease id, the id logged and the reservation id.
# KEYS: the four reservation keys, the leases (when there is a lease), per window its three
# keys, then one hash per budget.
# ARGV: id, owner, amount, budget keys as JSON, lease cap ('' for no lease), lease ttl (µs),
# how many windows, per window its limit, length (µs) and amount, then per budget its limit and
# expiry (ms or '').
# Returns {1, remaining, reset (µs), ...} with a pair per window; {2} settled already;
# {3} the lease is refused; {4, window index, remaining, retry after (µs; -1 for never)};
# {5, budget index, remaining}. A refusal is the first step to refuse, and nothing is held.
ADMIT_REQUEST = (
    _PRELUDE
    + _LEASES
    + _LOGS
    + _BUDGETS
    + """
local now = clock()
local id = ARGV[1]
local status = reservation_status(0)
if status == 2 then return {2} end
local leases, w = nil, 4
if ARGV[5] ~= '' then leases, w = KEYS[5], 5 end
if leases and not lease_fits(leases, id, tonumber(ARGV[5]), now) then return {3} end
local windows = tonumber(ARGV[7])
local refusal, used, present = rate_refusal(windows, w, 7, id, now)
if refusal then return {4, refusal[1], refusal[2], refusal[3]} end
local b, a = w + 3 * windows, 7 + 3 * windows
local budgets = #KEYS - b
if status == 0 then
  local over = budget_refusal(budgets, b, a, tonumber(ARGV[3]))
  if over then return {5, over[1], over[2]} end
end
-- Every step fits: nothing above changed a counter, everything below takes one.
if leases then take_lease(leases, id, tonumber(ARGV[6]), now) end
local result = log_request(windows, w, 7, id, now, used, present, {1, now})
if status == 0 then hold(0, budgets, b, a, id, ARGV[2], ARGV[3], ARGV[4], now) end
return result
"""
)

# KEYS: the leases (when ARGV[2] is '1'), then per adjustment the log's three keys.
# ARGV: request id, '1' or '0', then per adjustment the actual amount.
# Returns {lease released (1/0), then per adjustment 1 adjusted or 0 not logged}.
FINISH_REQUEST = (
    _PRELUDE
    + _LEASES
    + _LOGS
    + """
local id = ARGV[1]
local result, w = {0}, 0
if ARGV[2] == '1' then w = 1 end
for i = 1, #ARGV - 2 do
  result[i + 1] = adjust(KEYS[w + 3 * i - 1], KEYS[w + 3 * i], id, ARGV[i + 2])
end
if w == 1 then result[1] = leave(KEYS[1], id, clock()) end
return result
"""
)
