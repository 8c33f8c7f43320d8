-- wrk script for Falcon's benchmark: POST bodies for /infer or /v2 infer, unique or repeated.
--   wrk -c64 -d10s -s bench/wrk_infer.lua http://127.0.0.1:8000/infer -- infer unique
--   wrk ... http://127.0.0.1:8000/v2/models/sentiment/infer -- v2 repeated
--   wrk ... -- infer unique <run tag>   (run.py passes a fresh tag to every wrk run, so the
--                                        warm-up's texts are never cache hits in the measured run)
--   wrk ... -- infer unique <run tag> keys   (and a new Idempotency-Key on every request)
-- Prints one line "WRKJSON {...}" with requests/s, p50/p99 (ms) and error counts.

local kind, mode, run, keys = "infer", "unique", "0", false
local counter = 0
local requests_sent = 0
local words = {"great", "terrible", "battery", "screen", "service", "slow", "fast", "not",
               "bad", "love", "refund", "okay", "delivery", "food", "app", "support", "price"}
local threads = {}

setup = function(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

init = function(args)
  kind = args[1] or "infer"
  mode = args[2] or "unique"
  run = args[3] or tostring(os.time())  -- a per-run tag: texts never repeat across runs
  keys = args[4] == "keys"              -- a new Idempotency-Key on every request
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

local function text()
  if mode == "repeated" then
    return "great screen but the battery died after two days"
  end
  counter = counter + 1
  local n = #words
  return words[(counter % n) + 1] .. " " .. words[((counter * 7) % n) + 1] .. " "
      .. words[((counter * 13) % n) + 1] .. " review " .. counter .. " t" .. tostring(tid)
      .. " r" .. run
end

request = function()
  local t = text()
  local body
  if kind == "v2" then
    body = '{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":["' .. t .. '"]}]}'
  else
    body = '{"text":"' .. t .. '"}'
  end
  if keys then  -- a headers table replaces wrk.headers, so it repeats the content type
    requests_sent = requests_sent + 1
    return wrk.format(nil, nil, {["Content-Type"] = "application/json",
                                 ["Idempotency-Key"] = "k" .. requests_sent .. "-t"
                                   .. tostring(tid) .. "-r" .. run}, body)
  end
  return wrk.format(nil, nil, nil, body)
end

done = function(summary, latency, requests)
  local s = summary.duration / 1e6
  io.write(string.format(
    'WRKJSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,' ..
    '"p99_ms":%.3f,"max_ms":%.3f,"non_2xx":%d,"socket_errors":%d}\n',
    summary.requests, s, summary.requests / s, latency:percentile(50) / 1000,
    latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
