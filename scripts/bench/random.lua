-- wrk script: each request picks one of the paths given after `--` at random (uniform).
--   wrk -s random.lua http://127.0.0.1:8080 -- /obj/a?size=1 /obj/b?size=1
local paths = {}

function init(args)
  for _, p in ipairs(args) do
    paths[#paths + 1] = p
  end
  if #paths == 0 then
    paths[1] = "/"
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
