"""The benchmark's mixed agent workload through a gRPC balancer, at one and at two replicas.

    python bench/replicas.py --sluice target/release/sluice [--users 40 --years 4]

A private ClickHouse and Redis are loaded as in bench/sluice_bench.py; then nginx
(tests/servers/nginx.py: `grpc_pass`, round robin, each call on its own) fronts one replica
without and with `[server] replica_secret`, then two sharing it, and `--clients` agents ask random seed questions
for `--seconds` at each count. Printed and written to --out: queries per second, latency
percentiles, errors, and the CPU seconds per query of the replicas (together) and of nginx.
Every replica shares this machine's cores with the others, ClickHouse, Redis, nginx and the
clients: what two replicas add here is bounded by the cores, not by Sluice.
"""

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests" / "servers"))
from sluice_bench import (  # noqa: E402
    Gateway, Process, free_port, loaded_stack, log, workload)
from nginx import GrpcBalancer  # noqa: E402

import adbc_driver_flightsql.dbapi as flight_sql  # noqa: E402

SECRET = "replicas-benchmark-shared-secret-0123456789"


class Balanced:
    """The replicas behind nginx, as `workload` drives one gateway: connections go to the
    balancer; CPU is every replica's."""

    def __init__(self, replicas, balancer):
        self.replicas = replicas
        self.balancer = balancer
        self.stats = self

    def cpu(self):
        return sum(r.stats.cpu() for r in self.replicas)

    def connect(self, user):
        return flight_sql.connect(self.balancer.uri,
                                  db_kwargs={"username": user, "password": user},
                                  autocommit=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--years", type=int, default=4)
    ap.add_argument("--artists", type=int, default=500)
    ap.add_argument("--listeners", type=int, default=8, help="listeners the agents act for")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "replicas.json")
    args = ap.parse_args()
    results = {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "cores": os.cpu_count(), "clients": args.clients, "seconds": args.seconds,
               "scale": {"users": args.users, "years": args.years}, "setup": {}, "runs": []}
    with tempfile.TemporaryDirectory(prefix="sluice-replicas-") as tmp:
        tmp = Path(tmp)
        with loaded_stack(args, tmp, results) as stack:
            # One replica without a shared secret too: it starts queries ahead of their
            # DoGet, which replicas sharing one cannot (docs/scaling.md); the difference is
            # what that costs.
            for count, shared in ((1, False), (1, True), (2, True)):
                env = {"SLUICE_SERVER__REPLICA_SECRET": SECRET} if shared else {}
                replicas = [Gateway([args.sluice, "serve", "--config", stack.config, "--listen",
                                     f"127.0.0.1:{free_port()}"],
                                    tmp / f"replica-{count}-{shared}-{i}.log", env=env)
                            for i in range(count)]
                addresses = [r.uri.removeprefix("grpc://") for r in replicas]
                balancer = GrpcBalancer(tmp / f"nginx-{count}-{shared}", addresses).start()
                try:
                    nginx = Process(balancer.proc.pid)
                    nginx0 = nginx.cpu()
                    log(f"{count} replica(s), {'a shared' if shared else 'no'} replica_secret: "
                        f"{args.clients} clients for {args.seconds:.0f} s")
                    run = workload(Balanced(replicas, balancer), stack.contexts, args.clients,
                                   args.seconds)
                    run["replicas"] = count
                    run["replica_secret"] = shared
                    run["nginx_cpu_ms_per_query"] = \
                        (nginx.cpu() - nginx0) * 1e3 / max(run["queries"], 1)
                    served = balancer.served_by()
                    run["calls_per_replica"] = {a: served.count(a) for a in addresses}
                    results["runs"].append(run)
                    log(f"  {run['qps']:.1f} queries/s, p50 {run['latency_ms']['p50']:.1f} ms, "
                        f"p95 {run['latency_ms']['p95']:.1f} ms, errors {run['errors']}, "
                        f"replicas {run['gateway_cpu_ms_per_query']:.1f} CPU-ms/query, "
                        f"nginx {run['nginx_cpu_ms_per_query']:.1f} CPU-ms/query, "
                        f"calls {run['calls_per_replica']}")
                finally:
                    balancer.stop()
                    for r in replicas:
                        r.stop()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
