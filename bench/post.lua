-- wrk script: POST a JSON body, then print one machine-readable result line.
--
-- Arguments after `--`: BODY [PATH [HEADER...]], each HEADER as "Name: value"
-- (`wrk ... -s post.lua URL -- BODY "" "Authorization: Bearer k"`). When absent they come from
-- the environment: WRK_BODY, WRK_PATH, WRK_HEADERS (headers one per line). The path defaults to
-- the URL's path.
--
-- done() prints:  BENCH_RESULT {"requests":N,"duration_us":N,"bytes":N,"p50_us":N,...,"errors":{...}}
-- Latencies are in microseconds; errors.status counts responses with a status >= 400.

local function add_header(line)
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name == nil then
    error("post.lua: a header must look like 'Name: value', got: " .. line)
  end
  wrk.headers[name] = value
end

function init(args)
  local body = args[1] or os.getenv("WRK_BODY")
  if body == nil or body == "" then
    error("post.lua needs a JSON body: wrk ... -- BODY [PATH [HEADER...]], or WRK_BODY")
  end
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
  local path = args[2] or os.getenv("WRK_PATH")
  if path ~= nil and path ~= "" then
    wrk.path = path
  end
  if #args >= 3 then
    for i = 3, #args do
      add_header(args[i])
    end
  else
    for line in (os.getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do
      add_header(line)
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
