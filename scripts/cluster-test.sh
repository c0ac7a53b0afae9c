#!/usr/bin/env bash
# Failover across hosts: two silos, each in a network namespace of its own (veth on a bridge), on a PostgreSQL of the
# test's own, under load from scripts/cluster-driver.py (four conversations, streamed, every turn resent with its
# X-Turn-Id until it completes). Faults, in order: kill -9 of the silo holding the long-streaming conversation, a
# network partition of one silo (its link down: no peers, no database, no clients), a restart of PostgreSQL. Prints
# failover times, the time from each silo fault to the survivor's log line declaring that silo dead, requests lost and
# 500s, and checks the stored histories; exits 0 only with no request lost, no 500 and every history intact; 77 when
# it cannot run here (not root, no ip netns, no PostgreSQL).
# Usage: scripts/cluster-test.sh   (builds src/Silo in Release if needed; about 2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
skip() { echo "cluster-test: skipped: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root for ip netns"
command -v ip >/dev/null || skip "no ip (iproute2)"
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
pgbin=${pgbin:-$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")}
[ -x "$pgbin/initdb" ] || skip "PostgreSQL is not installed (scripts/start-postgres.sh installs it)"
id postgres >/dev/null 2>&1 || skip "no postgres user to run PostgreSQL as"

dll=$repo/src/Silo/bin/Release/net10.0/Weft.Silo.dll
[ -f "$dll" ] || dotnet build src/Silo -c Release -v quiet >/dev/null

tag=$(( $$ % 10000 ))
net=10.231.$(( tag % 250 ))
br=wb$tag
work=$(mktemp -d /tmp/weft-cluster.XXXXXX)
chmod 755 "$work"
pgport=$(( 56000 + tag % 1000 ))
declare -A pid ip
names=(a b)
ip[a]=$net.11
ip[b]=$net.12
store="Host=$net.1;Port=$pgport;Username=weft;Database=weft;Timeout=3;Command Timeout=5"
psql=("$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U weft -d weft)
now() { date +%s.%N; }

cleanup() {
  local rc=$?
  set +e
  touch "$work/stop"
  for n in "${names[@]}"; do [ -n "${pid[$n]:-}" ] && kill -9 "${pid[$n]}" 2>/dev/null; done
  [ -n "${driver:-}" ] && kill "$driver" 2>/dev/null
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" stop -m immediate >/dev/null 2>&1
  for n in "${names[@]}"; do ip netns del "weft$tag-$n" 2>/dev/null; done
  ip link del "$br" 2>/dev/null
  # a failed run keeps its logs (silos, PostgreSQL, turns) for whoever looks into it
  if [ -n "${KEEP:-}" ] || { [ "$rc" != 0 ] && [ "$rc" != 77 ]; }; then
    echo "logs kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

ip link add "$br" type bridge 2>/dev/null || skip "network devices cannot be created here (no CAP_NET_ADMIN)"
ip addr add "$net.1/24" dev "$br"
ip link set "$br" up
# a host whose bridge traffic goes through iptables (br_netfilter) would otherwise drop it in FORWARD
sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
for n in "${names[@]}"; do
  ns=weft$tag-$n
  ip netns add "$ns"
  ip link add "wv$tag$n" type veth peer name "wp$tag$n"
  ip link set "wp$tag$n" netns "$ns"
  ip -n "$ns" addr add "${ip[$n]}/24" dev "wp$tag$n"
  ip -n "$ns" link set "wp$tag$n" up
  ip -n "$ns" link set lo up
  ip link set "wv$tag$n" master "$br" up
done

mkdir "$work/pg"
chown postgres: "$work/pg"
runuser -u postgres -- "$pgbin/initdb" -D "$work/pg" -U weft --auth=trust -E UTF8 >/dev/null
echo "host all all $net.0/24 trust" >> "$work/pg/pg_hba.conf"
pg() {
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w "$@" \
    -o "-k /tmp -p $pgport -c listen_addresses=127.0.0.1,$net.1 -c fsync=off" >/dev/null
}
pg start
# pg_ctl -w returns once the server answers on one of its addresses; a CI run still had createdb's TCP connection
# refused right after, so it is given a few seconds
for try in $(seq 20); do
  "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U weft weft 2> "$work/createdb.err" && break
  if [ "$try" = 20 ]; then
    cat "$work/createdb.err" >&2
    echo "cluster-test: createdb failed; PostgreSQL's log:" >&2
    tail -n 50 "$work/pg/server.log" >&2
    exit 1
  fi
  sleep 0.5
done

# Each line of a silo's log gets the epoch time it was written at (the silo's own stamp has whole seconds): the
# report times each silo fault to the line of the survivor's MembershipLog that says the silo was declared dead.
stamp() {
  python3 -u -c 'import sys, time
for line in sys.stdin: sys.stdout.write(f"{time.time():.3f} {line}"); sys.stdout.flush()'
}
start_silo() {
  local n=$1
  ip netns exec "weft$tag-$n" env WEFT_Weft__CacheDirectory="$work/cache" DOTNET_gcServer=0 \
    dotnet "$dll" --engine cpu --kv-blocks 512 --postgres "$store" --address "${ip[$n]}" --insecure \
    --urls "http://${ip[$n]}:8000" --silo-port 11111 --gateway-port 0 --failure-detection 3 \
    > >(stamp >> "$work/silo-$n.log") 2>&1 &
  pid[$n]=$!
}
wait_until() {  # SECONDS WHAT COMMAND...
  local deadline=$(( SECONDS + $1 )) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "cluster-test: timed out waiting for $what" >&2; exit 1; }
    sleep 0.2
  done
}
ready() { curl -sf "http://${ip[$1]}:8000/health"; }
active() { [ "$("${psql[@]}" -tAc "SELECT count(*) FROM weft_membership WHERE status = 3")" = "$1" ]; }
# the silo whose KV cache (in the stored state: its batch key names the silo) holds conv-0
holder() {
  local state
  state=$("${psql[@]}" -tAc "SELECT encode(payload, 'escape') FROM weft_grain_state
    WHERE grain_id_extension LIKE '%/conv-0-%'" 2>/dev/null || true)
  for n in "${names[@]}"; do [[ $state == *"${ip[$n]}:11111"* ]] && { echo "$n"; return; }; done
  echo a
}
progress() {  # at least N more completed turns of every conversation than at the mark
  python3 - "$work/turns.jsonl" "$1" "$2" <<'EOF'
import json, sys
turns = [json.loads(l) for l in open(sys.argv[1])]
since, need = float(sys.argv[2]), int(sys.argv[3])
convs = {t["conv"] for t in turns}
sys.exit(0 if convs and all(sum(t["conv"] == c and t["ok"] and t["start"] > since for t in turns) >= need
                            for c in convs) else 1)
EOF
}
fault() { local t; t=$(now); echo "$t $1" >> "$work/faults"; echo "$t"; }
other() { [ "$1" = a ] && echo b || echo a; }
declared_dead() {  # N MARK: the survivor's log says silo N was declared dead after MARK
  awk -v t="$2" -v silo="${ip[$1]}:11111" '$1 > t && index($0, silo) && /left the cluster: declared dead/ { f = 1 }
    END { exit !f }' "$work/silo-$(other "$1").log"
}
# the fault at MARK stopped silo N: the report times the survivor's line declaring it dead
watch_death() { echo "$2 ${ip[$1]} $work/silo-$(other "$1").log" >> "$work/deaths"; }

# the first silo generates the demo model into the cache; the second finds it there
start_silo a
wait_until 120 "silo a ready" ready a
start_silo b
wait_until 120 "silo b ready" ready b
wait_until 30 "two active silos" active 2
: > "$work/faults"
: > "$work/deaths"
python3 scripts/cluster-driver.py run "http://${ip[a]}:8000,http://${ip[b]}:8000" "$work/turns.jsonl" \
  "$work/stop" &
driver=$!
wait_until 60 "the first turns" progress 0 2

victim=$(holder)
mark=$(fault "kill -9 of silo $victim (holds conv-0)")
kill -9 "${pid[$victim]}"
watch_death "$victim" "$mark"
wait_until 30 "silo $victim declared dead" declared_dead "$victim" "$mark"
wait_until 60 "turns after the kill" progress "$mark" 3
start_silo "$victim"
wait_until 120 "silo $victim back" ready "$victim"
wait_until 30 "two active silos again" active 2
sleep 1

cut=$(holder)
mark=$(fault "partition of silo $cut")
ip link set "wv$tag$cut" down
watch_death "$cut" "$mark"
wait_until 30 "silo $cut declared dead" declared_dead "$cut" "$mark"
wait_until 60 "turns during the partition" progress "$mark" 3
ip link set "wv$tag$cut" up
# declared dead while cut off, the silo stops itself once it reads the table again; else it is stopped here
for _ in $(seq 50); do kill -0 "${pid[$cut]}" 2>/dev/null || break; sleep 0.2; done
kill -9 "${pid[$cut]}" 2>/dev/null && echo "silo $cut did not stop itself after the partition; killed" || true
start_silo "$cut"
wait_until 120 "silo $cut back" ready "$cut"
wait_until 30 "two active silos again" active 2

mark=$(fault "PostgreSQL restart")
pg stop -m immediate
sleep 2
pg start
wait_until 60 "turns after the storage restart" progress "$mark" 3

touch "$work/stop"
wait "$driver"
driver=
echo "cluster-test: 2 silos in network namespaces, PostgreSQL, 4 conversations (conv-0 streams long replies)"
python3 scripts/cluster-driver.py report "$work/turns.jsonl" "$work/faults" "$work/deaths" "${psql[@]}"
