-- Pktgen-DPDK script for a device under test on the wire (perf/pktgen runs it; see perf/README.md).
--   Pktgen port 0 -> the device's outside port, the device's inside port -> Pktgen port 1.
-- Against perf/ten-filters.ini with clients = 198.18.100.0/24 and me = 198.18.0.10, 198.18.0.20:
--   permitted  UDP 198.18.100.0-255:40000 -> 198.18.0.10:53   (the permitted filter)
--   blocked    UDP 198.18.100.0-255:40000 -> 198.18.0.10:22   (the catch-all block)
--   mix        UDP 198.18.100.0 and 198.18.101.0 -> :53       (the second outside the /24: blocked)
-- each phase once per rate (percent of Pktgen's rate setting), 64-byte frames.
--
-- After each phase it waits until Pktgen's port counters stop moving (Pktgen copies the ports'
-- counters once a second) and appends one line to RESULTS:
--   phase=NAME rate=R sent=N received=M sent1=N1 received0=M0
-- sent is port 0's opackets and received port 1's ipackets over the phase; sent1 and received0
-- are the other direction (0 unless the device sends back).
--
-- Environment (all optional):
--   MOAT_PKTGEN_DIR    a directory shared with the harness: RESULTS is DIR/phases, and before
--                      phase k (from 0) the script waits for the file DIR/go-k, and before it
--                      quits for go-N after the last phase N-1, so that the harness can read
--                      the device's counters between phases and after the last; DIR/ready
--                      says that Pktgen's ports are started. Without it,
--                      RESULTS is ./pktgen-moat.txt and the phases run back to back.
--   MOAT_PKTGEN_RATES  comma-separated percentages (default 1,10,100)
--   MOAT_PKTGEN_MS     milliseconds each phase sends (default 2000)
--   MOAT_PKTGEN_WAIT_MS  longest wait for a link or a go file (default 60000)
-- By hand:  pktgen ... -- -P -m 1.0 -m 2.1 -f perf/pktgen-moat.lua   (under a terminal)

local dir = os.getenv("MOAT_PKTGEN_DIR")
local results = dir and (dir .. "/phases") or "pktgen-moat.txt"
local rates_text = os.getenv("MOAT_PKTGEN_RATES") or "1,10,100"
local phase_ms = tonumber(os.getenv("MOAT_PKTGEN_MS") or "2000")
local wait_ms = tonumber(os.getenv("MOAT_PKTGEN_WAIT_MS") or "60000")

local function append(line)
  local f = assert(io.open(results, "a"))
  f:write(line .. "\n")
  f:close()
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

-- Waits until ok() holds, checking every 100 ms; false after wait_ms.
local function wait_until(ok)
  local waited = 0
  while not ok() do
    if waited >= wait_ms then return false end
    pktgen.delay(100)
    waited = waited + 100
  end
  return true
end

local function counters()
  local s0 = pktgen.portStats("0", "port")[0]
  local s1 = pktgen.portStats("1", "port")[1]
  return { sent = s0.opackets, received = s1.ipackets, sent1 = s1.opackets, received0 = s0.ipackets }
end

local function same(a, b)
  return a.sent == b.sent and a.received == b.received and a.sent1 == b.sent1 and a.received0 == b.received0
end

-- Counters once they stop moving: two readings more than one copy period apart agree.
local function settled()
  local a = counters()
  for _ = 1, 30 do
    pktgen.delay(1100)
    local b = counters()
    if same(a, b) then return b end
    a = b
  end
  error("Pktgen's counters kept moving after the phase stopped")
end

local function up(port)
  return string.find(string.upper(tostring(pktgen.linkState(port)[tonumber(port)])), "UP") ~= nil
end

-- The packet of a phase: a range of sources to one destination port (range mode, so that every
-- field is set here and nothing is left from Pktgen's defaults).
local function shape(src_max, src_inc, dport)
  pktgen.range.ip_proto("0", "udp")
  pktgen.range.dst_ip("0", "start", "198.18.0.10")
  pktgen.range.dst_ip("0", "min", "198.18.0.10")
  pktgen.range.dst_ip("0", "max", "198.18.0.10")
  pktgen.range.dst_ip("0", "inc", "0.0.0.0")
  pktgen.range.src_ip("0", "start", "198.18.100.0")
  pktgen.range.src_ip("0", "min", "198.18.100.0")
  pktgen.range.src_ip("0", "max", src_max)
  pktgen.range.src_ip("0", "inc", src_inc)
  for _, what in ipairs({ "start", "min", "max" }) do
    pktgen.range.src_port("0", what, 40000)
    pktgen.range.dst_port("0", what, dport)
    pktgen.range.pkt_size("0", what, 64)
  end
  pktgen.range.src_port("0", "inc", 0)
  pktgen.range.dst_port("0", "inc", 0)
  pktgen.range.pkt_size("0", "inc", 0)
  pktgen.set_range("0", "on")
end

local phases = {
  { name = "permitted", src_max = "198.18.100.255", src_inc = "0.0.0.1", dport = 53 },
  { name = "blocked", src_max = "198.18.100.255", src_inc = "0.0.0.1", dport = 22 },
  -- 198.18.100.0 and 198.18.101.0 in turn: Pktgen writes the range into its mbufs one after the
  -- other when it fills the pool, so neighbouring mbufs (those a burst reuses) alternate.
  { name = "mix", src_max = "198.18.101.0", src_inc = "0.0.1.0", dport = 53 },
}

local function main()
  pktgen.screen("off")
  pktgen.stop("0")
  pktgen.set("0", "count", 0)
  -- Pktgen runs this script once its ports are started: only then may a memif client connect
  -- (one that comes earlier is turned away and does not retry).
  if dir then
    assert(io.open(dir .. "/ready", "w")):close()
  end
  if not wait_until(function() return up("0") and up("1") end) then
    error("the links did not come up (is the device under test connected to both memif ports?)")
  end
  local k = 0
  for rate in string.gmatch(rates_text, "[^,]+") do
    for _, p in ipairs(phases) do
      if dir and not wait_until(function() return exists(dir .. "/go-" .. k) end) then
        error("no go-" .. k .. " from the harness")
      end
      shape(p.src_max, p.src_inc, p.dport)
      pktgen.set("0", "rate", tonumber(rate))
      local before = settled()
      pktgen.start("0")
      pktgen.delay(phase_ms)
      pktgen.stop("0")
      local after = settled()
      append(string.format("phase=%s rate=%s sent=%d received=%d sent1=%d received0=%d", p.name, rate,
        after.sent - before.sent, after.received - before.received,
        after.sent1 - before.sent1, after.received0 - before.received0))
      k = k + 1
    end
  end
  append("done")
  -- Pktgen's leaving takes the memif links down, and a memif port's counters start again at 0 on
  -- the device's side: the harness reads them first, then says go-k once more.
  if dir and not wait_until(function() return exists(dir .. "/go-" .. k) end) then
    error("no go-" .. k .. " (the last) from the harness")
  end
end

local ok, err = pcall(main)
if not ok then
  pcall(append, "error " .. tostring(err))
end
pktgen.quit()
