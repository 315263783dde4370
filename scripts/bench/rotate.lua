-- wrk script: requests the paths given after `--` on the wrk command line, in turn, or at
-- random (uniform) when the first argument is `--random`.
--   wrk -s rotate.lua http://127.0.0.1:8080 -- /obj/a?size=1 /obj/b?size=1
--   wrk -s rotate.lua http://127.0.0.1:8080 -- --random /obj/a?size=1 /obj/b?size=1
-- With ROTATE_THINK_MS=T in the environment, each connection pauses a random time (exponential,
-- mean T ms) before each request: the offered load stops depending on the server's speed, so
-- two servers' latencies can be compared at the same load (C connections: about C / (T + latency)
-- requests per second).
local paths = {}
local random = false
local i = 0
local think_ms = tonumber(os.getenv("ROTATE_THINK_MS") or "") or 0

function init(args)
  for _, p in ipairs(args) do
    if p == "--random" and #paths == 0 and not random then
      random = true
    else
      paths[#paths + 1] = p
    end
  end
  if #paths == 0 then
    paths[1] = "/"
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  if random then
    return wrk.format("GET", paths[math.random(#paths)])
  end
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end

if think_ms > 0 then
  function delay()
    return math.floor(-think_ms * math.log(1 - math.random()))
  end
end
