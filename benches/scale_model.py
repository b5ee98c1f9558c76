#!/usr/bin/env python3
"""The registry over etcd at 1,000,000 instances: a model from the figures `registry-load --store etcd` measured.

    python3 benches/scale_model.py                         # 1,000,000 instances over 10 replicas
    python3 benches/scale_model.py --replicas 3 --page 10000

Every default below is a figure measured on the 2-vCPU VM of docs/BENCHMARKS.md (etcd 3.4.23, one member, on
the same machine as the registry and the load) at 100,000 instances, or an assumption named as such; see
docs/REGISTRY_SCALE.md for where each comes from. Python 3 standard library only.
"""

import argparse

MIB = 1024 * 1024
GIB = 1024 * MIB


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a = p.add_argument
    # The fleet (assumptions).
    a("--instances", type=int, default=1_000_000, help="instances registered (default 1,000,000)")
    a("--replicas", type=int, default=10, help="registry replicas; each instance heartbeats one (default 10)")
    a("--ttl-s", type=float, default=3.0, help="the registry's TTL; instances heartbeat every third of it")
    a("--lease-ttl-s", type=float, default=0.0,
      help="a replica's etcd lease (serve --etcd-lease-ttl-ms): how long a lost replica's instances stay in etcd "
           "while they move; 0: the TTL")
    a("--churn-per-min", type=float, default=0.01, help="share of instances restarting each minute (1%%)")
    a("--writes-per-restart", type=float, default=2.0,
      help="etcd writes per restart: a deregistration (or eviction) and a registration (default 2)")
    a("--compaction-retention-h", type=float, default=0.0,
      help="etcd's --auto-compaction-retention in hours; 0: none (etcd 3.4's default; the registry compacts nothing)")
    # Measured at 100,000 instances (docs/BENCHMARKS.md, "The registry over etcd").
    a("--us-per-heartbeat", type=float, default=2.45,
      help="registry CPU per heartbeat, µs (23-26%% of a core at 100,000 heartbeats/s, etcd store)")
    a("--etcd-writes-per-s", type=float, default=4300.0,
      help="registrations etcd took per second in the ramp (3,729-4,936/s; this VM, shared cores)")
    a("--etcd-cpu-us-per-write", type=float, default=137.0,
      help="etcd CPU per registration, µs (55-65%% of a core at 3,952-4,936/s)")
    a("--bytes-per-instance", type=float, default=1690.0,
      help="replica RSS per instance mirrored (169-172 MiB for a replica that read 100,000 from etcd)")
    a("--replica-base-mib", type=float, default=9.0, help="replica RSS with no instance")
    a("--kv-bytes", type=float, default=252.0, help="etcd's bytes per instance put (etcd_debugging_mvcc_total_put_size)")
    a("--db-bytes-per-write", type=float, default=375.0,
      help="etcd database growth per instance key written (35.8 MiB for 100,000)")
    a("--page", type=int, default=10000, help="keys per page of a replica's start-up read (rpc-registry's PAGE)")
    a("--read-us-per-key", type=float, default=14.6, help="start-up read, µs per key (fit of 3 page sizes)")
    a("--count-us-per-key", type=float, default=0.45,
      help="etcd 3.4 walks every key from a page's start to the prefix's end: µs per key walked (fit)")
    # What counts as broken (assumptions).
    a("--core-budget", type=float, default=1.0, help="cores a replica may spend on heartbeats")
    a("--memory-budget-gib", type=float, default=4.0, help="memory a replica may use")
    a("--quota-gib", type=float, default=2.0, help="etcd's --quota-backend-bytes (default 2 GiB)")
    a("--start-budget-s", type=float, default=60.0, help="how long a replica may take to start")
    a("--quota-budget-h", type=float, default=24.0, help="how long etcd must run before its quota is reached")
    a("--write-headroom", type=float, default=0.5, help="share of etcd's write capacity steady churn may use")
    return p.parse_args()


def main():
    m = parse()
    n, r = m.instances, m.replicas
    per_replica = n / r
    interval = m.ttl_s / 3
    heartbeats = per_replica / interval
    cores = heartbeats * m.us_per_heartbeat / 1e6
    churn_writes = n * m.churn_per_min / 60 * m.writes_per_restart
    etcd_cpu = churn_writes * m.etcd_cpu_us_per_write / 1e6
    # One etcd lease per replica, of the TTL in whole seconds (at least 2), kept alive every third of it.
    lease_ttl = max(-(-(m.lease_ttl_s or m.ttl_s) // 1), 2)
    keep_alives = r * 3 / lease_ttl
    live = n * m.db_bytes_per_write
    history_per_s = churn_writes * m.db_bytes_per_write
    history = history_per_s * m.compaction_retention_h * 3600
    quota = m.quota_gib * GIB
    kept = live + history if m.compaction_retention_h > 0 else float("inf")
    if kept < quota or history_per_s == 0:
        quota_in = float("inf")
    elif m.compaction_retention_h > 0:
        quota_in = 0.0
    else:
        quota_in = max(quota - live, 0) / history_per_s
    memory = m.replica_base_mib * MIB + n * m.bytes_per_instance
    start = n * m.read_us_per_key / 1e6 + m.count_us_per_key / 1e6 * n * n / (2 * m.page)
    failover = per_replica / m.etcd_writes_per_s
    cold = n / m.etcd_writes_per_s
    vanish = max(per_replica - lease_ttl * m.etcd_writes_per_s, 0)

    rows = [
        ("instances per replica", f"{per_replica:,.0f}"),
        ("heartbeats/s per replica", f"{heartbeats:,.0f} ({cores * 100:.0f}% of a core)"),
        ("etcd writes/s, steady, no churn", f"0 proposals (+ {keep_alives:.0f} lease keep-alives/s, not proposals in 3.4)"),
        ("etcd writes/s at churn", f"{churn_writes:,.0f} ({churn_writes / m.etcd_writes_per_s:.1%} of the measured capacity; "
                                   f"etcd CPU {etcd_cpu * 100:.1f}% of a core)"),
        ("etcd keyspace, live", f"{n * m.kv_bytes / MIB:,.0f} MiB of keys and values; database {live / MIB:,.0f} MiB"),
        ("etcd database growth at churn", f"{history_per_s / 1024:,.0f} KiB/s = {history_per_s * 86400 / GIB:,.1f} GiB/day "
                                          + (f"(kept {m.compaction_retention_h:g} h: {history / MIB:,.0f} MiB)"
                                             if m.compaction_retention_h > 0 else "(no compaction)")),
        ("etcd quota reached in", "never" if quota_in == float("inf") else f"{quota_in / 3600:,.1f} h"),
        ("memory per replica (mirrors every instance)", f"{memory / GIB:,.2f} GiB"),
        (f"replica start: read {n:,} keys in pages of {m.page:,}", f"{start:,.0f} s ({start / 60:,.1f} min)"),
        ("one replica lost: its instances re-register in", f"{failover:,.1f} s ({vanish:,.0f} instances vanish "
                                                            f"from discovery after its {lease_ttl:g} s lease until they do)"),
        ("every instance registers from cold in", f"{cold:,.0f} s ({cold / 60:,.1f} min)"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{n:,} instances, {r} replicas, heartbeat every {interval:g} s, churn {m.churn_per_min:.1%}/min")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")

    # What breaks first: each figure against its budget, worst first.
    limits = [
        ("replica start", start / m.start_budget_s, f"{start:,.0f} s vs {m.start_budget_s:g} s"),
        ("failover within the lease", failover / lease_ttl, f"{failover:,.1f} s vs {lease_ttl:g} s"),
        ("etcd quota", m.quota_budget_h * 3600 / quota_in if quota_in > 0 else float("inf"),
         "never reached" if quota_in == float("inf") else f"reached in {quota_in / 3600:,.1f} h vs {m.quota_budget_h:g} h"),
        ("replica memory", memory / (m.memory_budget_gib * GIB), f"{memory / GIB:,.2f} vs {m.memory_budget_gib:g} GiB"),
        ("heartbeat CPU", cores / m.core_budget, f"{cores:,.2f} vs {m.core_budget:g} cores"),
        ("etcd writes at churn", churn_writes / (m.etcd_writes_per_s * m.write_headroom),
         f"{churn_writes:,.0f} vs {m.etcd_writes_per_s * m.write_headroom:,.0f}/s"),
    ]
    limits.sort(key=lambda l: -l[1])
    print("what breaks first (figure / budget, over 1 breaks):")
    for name, ratio, detail in limits:
        print(f"  {name:<24} {ratio:>8,.2f}  {detail}")


if __name__ == "__main__":
    main()
