-- wrk script: rotates requests over the paths given after `--` on the wrk command line.
--   wrk -s rotate.lua http://127.0.0.1:8080 -- /obj/a?size=1 /obj/b?size=1
local paths = {}
local i = 0

function init(args)
  for _, p in ipairs(args) do
    paths[#paths + 1] = p
  end
  if #paths == 0 then
    paths[1] = "/"
  end
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
