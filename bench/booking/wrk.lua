-- wrk's side of bench/booking (`python -m bench.booking --wrk`): the same bookings, one
-- Idempotency-Key each, from wrk's C client.
--   wrk -t T -c C -d D --latency -s bench/booking/wrk.lua URL -- PLAN TOKEN T
-- PLAN holds one JSON body per line; thread k sends lines k, k+T, k+2T, ... so no two requests
-- ask for the same slot.
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
end

function init(args)
   plan, token, threads = args[1], args[2], tonumber(args[3])
   bodies = {}
   for line in io.lines(plan) do
      bodies[#bodies + 1] = line
   end
   index = id + 1
end

function request()
   local body = bodies[index]
   local key = "wrk-" .. index
   index = index + threads
   return wrk.format("POST", "/v1/appointments", {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. token,
      ["Idempotency-Key"] = key,
   }, body)
end
