# Shared by the single-peer benchmarks (tls.sh, ssd.sh); sourced after scripts/lib.sh.
# Each script sets WORK, PIDS, LOAD_CPU and SIM_BIN before calling start_sim.

# A random free port below the kernel's ephemeral range (32768 up by default): the load leaves
# thousands of client ports in TIME_WAIT there, which a server cannot bind.
port() {
  local p n
  for ((n = 0; n < 50; n++)); do
    p=$((20000 + RANDOM % 12000))
    port_in_use "$p" || { echo "$p"; return; }
  done
  echo "$p"
}

ticks() {  # utime+stime of a process group
  sed -E 's/^[0-9]+ \(.*\) //' /proc/[0-9]*/stat 2>/dev/null |
    awk -v g="$1" '$3 == g { s += $12 + $13 } END { print s + 0 }'
}

# A ÷ B as "1.23×", or "—" when either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f×", a / b; else print "—" }'; }

# Starts the origin simulator on the load CPU; sets SIM_PORT.
start_sim() {
  SIM_PORT=$(port)
  setsid taskset -c "$LOAD_CPU" "$SIM_BIN" --listen "127.0.0.1:$SIM_PORT" --name bench >"$WORK/sim.log" 2>&1 &
  PIDS+=($!)
  wait_for_port "$SIM_PORT" 10 "$!" || die "origin simulator did not start"
}

# The tail of a streamedge bench config: one origin group (the simulator), one catch-all route.
se_routes() {
  cat <<CONF
[[origin_group]]
name = "sim"
  [[origin_group.origin]]
  url = "http://127.0.0.1:$SIM_PORT"
  dc = "bench"
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "sim"
CONF
}
