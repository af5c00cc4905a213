-- wrk script for scripts/bench/reception_http.py: each request scans a CCCD QR at one of the exam rooms.
-- About 70 % are new patients (register + visit + ticket), 30 % repeat a QR this thread already sent
-- (find the patient and give back their ticket). CCCD digits agree with the QR's sex and birth year.
local counter, made, thread_no = 0, {}, 0
local points = {"PK1", "PK2", "PK3", "PK4"}
local surnames = {"Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi"}
local given = {"An", "Bình", "Cường", "Dũng", "Hà", "Lan", "Minh", "Nam", "Hoa", "Tuấn"}

function setup(thread)
  thread:set("thread_no", thread_no)
  thread_no = thread_no + 1
end

function init(args)
  math.randomseed(os.time() + thread_no * 7919)
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("VNHIS_BENCH_TOKEN")
  wrk.headers["Content-Type"] = "application/json"
end

local function qr_for(n)
  local yy = 50 + (n % 45)
  local id = string.format("0%02d0%02d%06d", 1 + thread_no, yy, n)
  local name = surnames[1 + n % #surnames] .. " Văn " .. given[1 + math.floor(n / 7) % #given]
  return string.format("%s||%s|%02d%02d19%02d|Nam|Số %d Lê Lợi, Hà Nội|01012022", id, name,
                       1 + n % 28, 1 + n % 12, yy, n % 300)
end

function request()
  local qr
  if #made > 0 and math.random() < 0.3 then
    qr = made[math.random(#made)]
  else
    counter = counter + 1
    qr = qr_for(counter)
    made[#made + 1] = qr
  end
  local body = string.format('{"qr": "%s", "service_point": "%s"}', qr, points[math.random(#points)])
  return wrk.format("POST", "/api/v1/reception/scan", nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d non2xx=%d errors=%d p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000))
end
