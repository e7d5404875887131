#!/usr/bin/env bash
# bench/fleet: a fresh meridiand with N terminals (default 1,000,000) enrolled,
# each holding its own credential, that have all asked for a target, through
# the public API. Measures the enrolment rate (POST /v1/terminals, 100,000 a
# request), the credential issuance rate (POST /v1/terminals/{id}/credential:
# one signed request per terminal), the time a fresh daemon takes to be ready
# (/readyz 200) with N enrolled, the registration rate,
# `GET /v1/rollouts/{id}` (meridian rollout status) and `POST /v1/rollout-plans`
# (meridian rollout plan) latency, target-poll latency alone and while rollout
# status is called back to back, the daemon's RSS and the data directory's
# size per terminal. Then the identity figures of issue 11: N target polls of
# distinct made-up ids all sent with terminal 0's valid credential (each must
# be 403, and the registry stay as it was: GET /v1/fleet, the fleet view and
# meridian_auth_failures_total{reason="wrong_terminal"}), and the time to be
# ready again after a restart (the issue asks for < 5 s). Last, the rate of
# reports that each count (a synced write each: many at once share one sync).
# Prints a markdown table and writes bench/fleet/RESULTS.md.
#
# Terminal i's Ed25519 key is derived from its id by the load client, so the
# client enrols the public keys, asks for every credential and keeps them in
# a file that the register and poll phases read (the shared terminal.token
# opens no terminal route any more).
#
# Usage: bench/fleet/run.sh [N]
#   BUILD=dir          meson build directory (default build-release, set up --buildtype=release);
#                      only daemon/meridiand and cli/meridian are built
#   CONNS=64           connections registering terminals (and asking for credentials)
#   FORGE_N=N          forged polls (distinct made-up ids, one terminal's credential)
#   REPORT_N=100000    terminals sending one report each (rollout `next` at its last stage)
#   CALLS=20           measured calls of rollout status and of the plan
#   POLL_RATE=2000     target polls per second in the latency phases (open loop)
#   POLL_CONNS=32      connections they are spread over
#   POLL_IDS=10000     polls go to terminals drawn from the first POLL_IDS registered
#   POLL_SECONDS=15    length of each latency phase
#   RESULTS=file       where the table goes (default bench/fleet/RESULTS.md; "-" for nowhere)
# The load client (bench/fleet/load.cc) is compiled here with g++ (-lsodium), not by meson.
# At N = 1,000,000 a run takes 5 to 7 minutes on 2 cores and about 400 MB in /tmp
# (the credentials, ~330 B each, and the data directory).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
n=${1:-1000000}
build=${BUILD:-$root/build-release}
[[ $build = /* ]] || build=$root/$build
conns=${CONNS:-64}
calls=${CALLS:-20}
poll_rate=${POLL_RATE:-2000}
poll_conns=${POLL_CONNS:-32}
poll_ids=${POLL_IDS:-10000}
((poll_ids > n)) && poll_ids=$n
poll_seconds=${POLL_SECONDS:-15}
forge_n=${FORGE_N:-$n}
report_n=${REPORT_N:-100000}
((report_n > n)) && report_n=$n
results=${RESULTS:-$here/RESULTS.md}
t_start=$(date +%s)
load_start=$(cut -d' ' -f1 /proc/loadavg)

bench=fleet
source "$here/lib.sh"
disk_bytes() { du -sb "$data" | cut -f1; }
wrong_terminal() {
  curl -sf "$server/metrics" |
    awk '/^meridian_auth_failures_total\{/ && /reason="wrong_terminal"/ {s += $2} END {printf "%.0f\n", s}'
}
cli --token-file "$data/operator.token" rollout start fleet 1.0.1 --id next --stages 1,10,50,100 >/dev/null
cat >"$work/plan_spec.json" <<'JSON'
{"model":"fleet","target_version":"1.0.1","channel":"stable","stages_percent":[1,10,50,100]}
JSON
sleep 2  # the deltas of the publish are computed in the background

# --- enrolment: every terminal's public key, then every terminal's credential
echo "fleet: enrolling $n terminals, then asking for their credentials over $conns connections"
rss_e0=$(rss_kb)
disk_e0=$(disk_bytes)
"$load" enrol --port "$port" --token "$op" --n "$n" --conns "$conns" --creds "$work/creds" >"$work/enrol.json" ||
  { echo "fleet: enrolment failed: $(cat "$work/enrol.json")" >&2; exit 1; }
# Restarted once: the time to be ready with N enrolled, and a baseline
# measured as the end figures are (RocksDB replays its WAL into table files at open).
stop_daemon
start_daemon
start_enrolled_s=$ready_s
rss0=$(rss_kb)
disk0=$(disk_bytes)

# --- registration: one target poll per terminal
echo "fleet: registering $n terminals over $conns connections"
cpu0=$(cpu_s)
"$load" register --port "$port" --creds "$work/creds" --n "$n" --conns "$conns" >"$work/register.json" ||
  echo "fleet: some registrations did not answer 200: $(cat "$work/register.json")" >&2
cpu1=$(cpu_s)
rss1=$(rss_kb)
# Known terminals are written to the store by the daemon's once-a-second tick,
# 10,000 records per tick: wait until the store stops growing (the backlog is
# written) before reading its size.
t_drain=$(now)
same=0 last=-1
for _ in $(seq 1 $((n / 5000 + 120))); do
  d=$(metric meridian_store_disk_bytes)
  if [[ $d == "$last" ]]; then ((++same)); else same=0; fi
  ((same >= 4)) && break
  last=$d
  sleep 1
done
drain_s=$(python3 -c "print(f'{$(now) - $t_drain:.0f}')")
curl -sf -H "Authorization: Bearer $op" "$server/v1/fleet" >"$work/fleet.json"
curl -sf "$server/metrics" | grep '^meridian_store_bytes' >"$work/store_bytes.txt" || true

# --- rollout status and plan
echo "fleet: $calls × rollout status, $calls × rollout plan"
"$load" call --port "$port" --token "$op" --path /v1/rollouts/next --count "$calls" \
  --reply-file "$work/status_reply.json" >"$work/status.json"
"$load" call --port "$port" --token "$op" --method POST --path /v1/rollout-plans --body-file "$work/plan_spec.json" \
  --count "$calls" --reply-file "$work/plan_reply.json" >"$work/plan.json"

# --- target polls: alone, then while rollout status runs back to back
echo "fleet: target polls at $poll_rate/s for ${poll_seconds}s, alone, then with rollout status in a loop"
poll_args=(--port "$port" --creds "$work/creds" --ids "$poll_ids" --rate "$poll_rate" --conns "$poll_conns" --seconds "$poll_seconds")
"$load" poll "${poll_args[@]}" >"$work/poll.json"
"$load" poll "${poll_args[@]}" --side-path /v1/rollouts/next --side-token "$op" >"$work/poll_status.json"
rss2=$(rss_kb)
hwm2=$(hwm_kb)

# --- forged polls: distinct made-up ids, all with terminal 0's credential
echo "fleet: $forge_n polls of made-up ids with one terminal's credential"
fleet_page() { curl -sf -H "Authorization: Bearer $op" "$server/v1/fleet/terminals?model=fleet&after=forged-&limit=1000"; }
curl -sf -H "Authorization: Bearer $op" "$server/v1/fleet" >"$work/fleet_before_forge.json"
fleet_page >"$work/page_before_forge.json"
wrong0=$(wrong_terminal)
"$load" forge --port "$port" --cred "$(head -1 "$work/creds")" --n "$forge_n" --conns "$conns" >"$work/forge.json" ||
  echo "fleet: some forged polls were not refused with 403: $(cat "$work/forge.json")" >&2
wrong1=$(wrong_terminal)
curl -sf -H "Authorization: Bearer $op" "$server/v1/fleet" >"$work/fleet_after_forge.json"
fleet_page >"$work/page_after_forge.json"
echo $((wrong1 - wrong0)) >"$work/wrong_terminal_delta"

# --- the data directory: stopped (SIGTERM: the store is closed; what the WAL
# holds stays in it), then once more after a restart (RocksDB replays the WAL
# into table files at open) — the daemon offers no flush or compaction call.
stop_daemon
disk1=$(disk_bytes)
start_daemon
restart_s=$ready_s
rss3=$(rss_kb)
curl -sf -H "Authorization: Bearer $op" "$server/v1/fleet" >"$work/fleet_restart.json"
stop_daemon
disk2=$(disk_bytes)

# --- reports: rollout `next` promoted to its last stage (100 %: every terminal
# in its cohort), then one healthy `installed` report from each of the first
# REPORT_N terminals, as fast as the connections go: each is counted, so
# each is a synced write and a run of the gates.
start_daemon
echo "fleet: $report_n reports over $conns connections"
for _ in 1 2 3; do cli --token-file "$data/operator.token" rollout promote next >/dev/null; done
"$load" report --port "$port" --creds "$work/creds" --n "$report_n" --conns "$conns" >"$work/report.json" ||
  echo "fleet: some reports were not answered 202: $(cat "$work/report.json")" >&2
stop_daemon
total_s=$(($(date +%s) - t_start))
load_end=$(cut -d' ' -f1 /proc/loadavg)

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_gib=$(awk '/^MemTotal:/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench/fleet/RESULTS.md' || echo "+dirty")
POLL_IDS_USED=$poll_ids START_ENROLLED_S=$start_enrolled_s RSS_E0=$rss_e0 DISK_E0=$disk_e0 python3 - "$work" "$n" "$(python3 -c "print($cpu1 - $cpu0)")" "$rss0" "$rss1" "$rss2" "$hwm2" "$rss3" "$disk0" "$disk1" "$disk2" "$drain_s" "$restart_s" \
  "$total_s" "$load_start/$load_end" "$(date -u +%F)" "$commit" "$(nproc)" "$cpu" "$mem_gib" "$results" <<'PY'
import json, os, sys
(work, n, reg_cpu, rss0, rss1, rss2, hwm2, rss3, disk0, disk1, disk2, drain_s, restart_s, total_s, loadavg, date, commit, nproc, cpu,
 mem_gib, results) = sys.argv[1:]
n = int(n)
rss0, rss1, rss2, hwm2, rss3 = (int(x) * 1024 for x in (rss0, rss1, rss2, hwm2, rss3))
disk0, disk1, disk2 = int(disk0), int(disk1), int(disk2)
load = lambda name: json.load(open(f"{work}/{name}"))
reg, status, plan = load("register.json"), load("status.json"), load("plan.json")
poll, poll_st = load("poll.json"), load("poll_status.json")
def known(f):
    return sum(v["terminals"] for c in load(f)["channels"] for v in c["versions"])
fleet, fleet2 = known("fleet.json"), known("fleet_restart.json")
enrol, forge, report = load("enrol.json"), load("forge.json"), load("report.json")
rss_e0, disk_e0 = int(os.environ["RSS_E0"]) * 1024, int(os.environ["DISK_E0"])
page_ids = lambda f: [t["id"] for t in load(f)["terminals"]]
page0, page1 = page_ids("page_before_forge.json"), page_ids("page_after_forge.json")
forged_listed = sum(i.startswith("forged-") for i in page1)
wrong = int(open(f"{work}/wrong_terminal_delta").read())
mib = lambda b: f"{b / 1048576:,.0f} MiB"
ms = lambda s: f"{s['p50']:,.1f} / {s['p99']:,.1f} / {s['max']:,.1f}" if s.get("n") else "–"
def polled(p):  # polls due but never sent before the phase ended count with their wait so far: a lower bound
    cut = f"; ≥: {p['unsent']:,} due polls never sent, counted with their wait so far" if p["unsent"] else ""
    return (f"{ms(p['latency'])} ms ({p['rate_asked']:,.0f}/s asked, {p['rate_done']:,.0f}/s answered, "
            f"{p['conns']} conns, {codes(p['codes'])}{cut})")
codes = lambda c: ", ".join(f"{k}: {v:,}" for k, v in c.items())
stages = json.load(open(f"{work}/status_reply.json"))["stages"]
store = open(f"{work}/store_bytes.txt").read().split("\n")
part = {l.split('"')[1]: int(float(l.split()[-1])) for l in store if 'part="' in l}
batches = -(-n // enrol["batch"])
rows = [
    ("terminals enrolled (`POST /v1/terminals`, then one credential each)",
     f"{n:,} (enrol: {codes(enrol['enrol_codes'])}; credential: {codes(enrol['cred_codes'])})"),
    ("enrolment rate", f"{enrol['enrol_rate']:,.0f} terminals/s ({enrol['enrol_seconds']:,.1f} s, "
                       f"{batches} requests of ≤ {enrol['batch']:,}, one at a time)"),
    ("credential issuance rate", f"{enrol['cred_rate']:,.0f} credentials/s ({enrol['cred_seconds']:,.1f} s, "
                                 f"{enrol['cred_conns']} connections; load client CPU {enrol['cpu_s'] - enrol['keys_cpu_s']:,.1f} s)"),
    ("enrolled records, after a restart: RSS / data dir per terminal",
     f"{(rss0 - rss_e0) / n:,.0f} B / {(disk0 - disk_e0) / n:,.0f} B"),
    ("fresh start with them enrolled (exec → `/readyz` 200)", f"{os.environ['START_ENROLLED_S']} s"),
    ("terminals registered (target polls answered)", f"{n:,} ({codes(reg['codes'])})"),
    ("registration rate", f"{reg['rate']:,.0f} polls/s ({reg['seconds']:,.1f} s, {reg['conns']} connections)"),
    ("CPU during registration", f"daemon {float(reg_cpu):,.1f} s, load client {reg['cpu_s']:,.1f} s, in {reg['seconds']:,.1f} s"),
    ("known terminals (GET /v1/fleet)", f"{fleet:,}; after a restart {fleet2:,}"),
    ("rollout status `GET /v1/rollouts/{id}` p50 / p99 / max",
     f"{ms(status['latency'])} ms ({status['latency']['n']} calls, 4 stages; stage 0 eligible {stages[0]['eligible']:,})"),
    ("rollout plan `POST /v1/rollout-plans` p50 / p99 / max", f"{ms(plan['latency'])} ms ({plan['latency']['n']} calls, 4 stages)"),
    ("target poll p50 / p99 / max, alone (from when due)", polled(poll)),
    ("target poll p50 / p99 / max, rollout status in a loop", polled(poll_st)),
    ("same, time from send to answer only (p50 / p99 / max)", f"alone {ms(poll['service'])} ms; with status {ms(poll_st['service'])} ms"),
    ("rollout status meanwhile p50 / p99 / max", f"{ms(poll_st['side']['latency'])} ms ({poll_st['side']['latency']['n']} calls)"),
    ("daemon RSS before → after registration", f"{mib(rss0)} → {mib(rss1)} (peak {mib(hwm2)}; after a restart {mib(rss3)})"),
    ("RSS per terminal", f"{(rss1 - rss0) / n:,.0f} B"),
    ("data dir before → after (stopped with SIGTERM; the WAL stays)", f"{mib(disk0)} → {mib(disk1)}: {(disk1 - disk0) / n:,.0f} B/terminal"),
    ("data dir after a restart and SIGTERM (WAL replayed into SST)", f"{mib(disk2)}: {(disk2 - disk0) / n:,.0f} B/terminal"),
    ("store while running (metrics, after the backlog drained)", ", ".join(f"{k} {mib(v)}" for k, v in part.items())),
    ("time to write the registry backlog", f"{drain_s} s"),
    ("forged polls: distinct made-up ids, terminal 0's valid credential",
     f"{forge['n']:,} ({codes(forge['codes'])}): {forge['rate']:,.0f} polls/s ({forge['seconds']:,.1f} s, {forge['conns']} connections)"),
    ("registry after them", f"known (GET /v1/fleet) {known('fleet_before_forge.json'):,} → {known('fleet_after_forge.json'):,}; "
                            f"fleet view page after `forged-` {'unchanged' if page0 == page1 else 'CHANGED'} "
                            f"({len(page1):,} rows, {forged_listed} forged ids); "
                            f"auth failures `wrong_terminal` +{wrong:,}"),
    ("restart after them (exec → `/readyz` 200)", f"{restart_s} s"),
    ("reports (`POST /v1/terminals/{id}/reports`), each counted: a synced write",
     f"{report['rate']:,.0f} reports/s ({report['n']:,} reports, {report['seconds']:,.1f} s, {report['conns']} connections; "
     f"{codes(report['codes'])}; counted {report['counted']:,})"),
    ("report latency p50 / p99 / max", f"{ms(report['latency'])} ms"),
    ("whole run", f"{int(total_s) // 60} min {int(total_s) % 60} s"),
    ("machine load average (1 min) at start / end", loadavg.replace("/", " / ")),
]
NOTES = """
How: one `meridiand` (release build, default threads: one per core) on 127.0.0.1, model `fleet`
channel `stable`: rollout `base` (1.0.0, one stage of 100 %, promoted: completed) and rollout
`next` (1.0.1, stages 1/10/50/100, held in stage 0). Terminal *i* is `term-%07d`, region
sg/ae/br, one of three profiles, running 1.0.0 (8 in 10), 1.0.1 (1 in 10) or nothing.
Terminal *i*'s Ed25519 key is derived from its id (seed: SHA-256 of the id); the load client
enrols the public keys with the operator token, then sends each terminal's signed credential
request and keeps the credentials: every target poll carries its terminal's own. Registration
is one target poll (no `wait`) per terminal. Status is `GET /v1/rollouts/next`,
plan is `POST /v1/rollout-plans` with the spec of `next` (both on one keep-alive connection,
one call at a time, after one unmeasured call). Target-poll latency is open loop: polls of
terminals drawn from the first POLL_IDS are due at a fixed rate and each counts from when it was
due, so a daemon that stalls is charged for the polls it held up; polls still unsent when the
phase ends count with their wait so far (the table says how many: its figures are then lower
bounds). "From send to answer" leaves the queueing out. RSS is VmRSS of the daemon; bytes per
terminal are the differences over N. The daemon offers no flush or compaction call: the data
directory is measured after SIGTERM (the WAL kept), and again after a restart (RocksDB replays
the WAL into table files at open) and another SIGTERM. Start and restart times run from the
daemon's exec until `/readyz` answers 200 (polled every 50 ms). The forged polls name ids
`forged-%07d` that were never enrolled, each with terminal 0's credential; the fleet view is
`GET /v1/fleet/terminals?model=fleet&after=forged-&limit=1000` (where forged ids would sort).
The reports come last, after one more restart: `next` is promoted to its last stage (100 %),
then each of the first REPORT_N terminals sends one healthy `installed` report of 1.0.1.
"""
table = "| what | figure |\n| --- | --- |\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)
print(table, end="")
if results != "-":
    with open(results, "w") as f:
        f.write("# bench/fleet results\n\n")
        f.write(f"`bench/fleet/run.sh {n}` on {date}, commit {commit}: {nproc} cores ({cpu}), {mem_gib} GiB RAM; "
                f"release build; the load client shares the machine with the daemon.\n\n")
        f.write(table)
        f.write(NOTES.replace("POLL_IDS", f"{int(os.environ['POLL_IDS_USED']):,}").replace("REPORT_N", f"{report['n']:,}"))
    print(f"fleet: wrote {results}")
PY
