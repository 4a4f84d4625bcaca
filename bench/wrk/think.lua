-- Users, not a firehose: each connection waits a random think time between its requests
-- (THINK_MIN_MS..THINK_MAX_MS, uniform), so latency is the server's, not a queue's.
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")

local min_ms = tonumber(os.getenv("THINK_MIN_MS") or "500")
local max_ms = tonumber(os.getenv("THINK_MAX_MS") or "1500")

function init(args)
  math.randomseed(os.time() * 100 + tonumber(wrk.thread:get("id")))
end

function delay()
  return math.random(min_ms, max_ms)
end
