-- `ledger bench query`'s request mix for wrk (https://github.com/wg/wrk, scripting: its
-- SCRIPTING file). Arguments after `--`: a file of request paths, one a line; `no-cache` or
-- `cache`; the bearer token. Each request is the next path (round robin over the file).
local paths = {}
local next_path = 0

function init(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  wrk.headers["Authorization"] = "Bearer " .. args[3]
  if args[2] == "no-cache" then
    wrk.headers["Cache-Control"] = "no-cache"
  end
end

function request()
  next_path = next_path % #paths + 1
  return wrk.format("GET", paths[next_path])
end

-- One line for the bench to parse: requests, duration (us), p50 and p99 latency (us), and the
-- errors: non-2xx/3xx answers plus connect, read, write and timeout errors.
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("ledger-bench-query %d %d %d %d %d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.status + errors.connect + errors.read + errors.write + errors.timeout))
end
