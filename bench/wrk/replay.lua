-- Send prepared requests, each exactly once, then stop. The file BENCH_REPLAY_FILE holds one
-- request per line: method, path, cookie, extra header name, its value, body (tab-separated;
-- body url-encoded). Thread i of n sends lines i, i+n, i+2n ...
-- wrk wants a request from every free connection: once a thread has sent all of its lines,
-- its connections wait (delay) and then ask for the bare endpoint (answers carry X-Bench-Bare
-- and are not counted). The thread stops when all its own answers are in, or when none has
-- come for QUIET_SECONDS after the last was sent (a request that timed out never answers).
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")

local mine = {}
local next_line = 1
-- Before the run, wrk calls request() once on the first thread's Lua state only to check what
-- it returns (wrk.c: script_verify_request, for thread 0 after its init). That call must not
-- use up a line: it was the one attempt in 10,000 that bench/contention.py found never sent.
local checking = false
local answered = 0
local last_activity = os.time()
local referer = os.getenv("BENCH_REFERER") or ""
local QUIET_SECONDS = tonumber(os.getenv("BENCH_QUIET_SECONDS") or "90")
local IDLE_DELAY_MS = 2000
-- With THINK_MAX_MS set, each connection waits a think time (THINK_MIN_MS..THINK_MAX_MS,
-- uniform) before each of its requests: people, not a firehose (as think.lua).
local think_min = tonumber(os.getenv("THINK_MIN_MS") or "0")
local think_max = tonumber(os.getenv("THINK_MAX_MS") or "0")
-- Then a connection with nothing left to send waits long, so that bare requests do not mix
-- their latencies into the run's (the benchmark stops wrk once every answer is in).
if think_max > 0 then IDLE_DELAY_MS = 60000 end

function init(args)
  local id = tonumber(wrk.thread:get("id"))
  math.randomseed(os.time() * 100 + id)
  checking = (id == 1)
  local n = tonumber(args[1])
  local i = 0
  for line in io.lines(os.getenv("BENCH_REPLAY_FILE")) do
    i = i + 1
    if (i - id) % n == 0 then
      local method, path, cookie, hname, hvalue, body = line:match(
        "^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = {["Cookie"] = cookie, ["X-Forwarded-Proto"] = "https",
                       ["Referer"] = referer}
      if hname ~= "" then headers[hname] = hvalue end
      if method == "POST" then
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers["HX-Request"] = "true"
      end
      table.insert(mine, wrk.format(method, path, headers, body ~= "" and body or nil))
    end
  end
end

function delay()
  if next_line > #mine then
    if os.time() - last_activity > QUIET_SECONDS then wrk.thread:stop() end
    return IDLE_DELAY_MS
  end
  if think_max > 0 then return math.random(think_min, think_max) end
  return 0
end

function request()
  if checking then
    checking = false
    return wrk.format("GET", "/__bench/bare")
  end
  if next_line <= #mine then
    local r = mine[next_line]
    next_line = next_line + 1
    last_activity = os.time()
    return r
  end
  return wrk.format("GET", "/__bench/bare")
end

function bench_on_response(status, headers, body)
  if headers["X-Bench-Bare"] then
    -- not one of ours: undo the count report.lua made
    statuses[status] = statuses[status] - 1
    if statuses[status] == 0 then statuses[status] = nil end
  else
    answered = answered + 1
    last_activity = os.time()
    if answered >= #mine then wrk.thread:stop() end
  end
end
