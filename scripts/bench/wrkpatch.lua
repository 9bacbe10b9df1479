-- wrk script for scripts/bench/hubfloor.sh: desired merge patches, as
-- BenchmarkTwinPatch and replicabench -mode patch send them, on the module
-- twins m0 … m(N-1) of device "bench", with the Authorization header in $TOKEN.
--   wrk -t2 -cN -d10s -s scripts/bench/wrkpatch.lua https://HOST:PORT -- N 2
-- (N modules, 2 threads). Thread t of T sends to modules t, t+T, t+2T, … in
-- turn, so with N modules and N connections two requests rarely share a twin.
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  modules, nthreads = tonumber(args[1]), tonumber(args[2])
  token = os.getenv("TOKEN") or ""
  n = 0
end
function request()
  n = n + 1
  local m = id + nthreads * (n % math.max(1, math.floor(modules / nthreads)))
  return wrk.format("PATCH", "/twins/bench/modules/m" .. m .. "?api-version=2021-04-12",
    {["Content-Type"] = "application/json", ["Authorization"] = token},
    '{"properties":{"desired":{"n":' .. n .. ',"interval":5}}}')
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("errors %d, non-2xx %d\n", e.connect + e.read + e.write + e.timeout, e.status))
end
