#!/usr/bin/env python3
"""What one page of a replica's start-up read costs etcd, by where the page starts.

    cargo run --release -p benches --features etcd --bin registry-load -- --store etcd --phase-secs 60
    python3 benches/etcd_page_cost.py http://127.0.0.1:PORT       # the URL registry-load prints first

Reads one page of the registry's instance keys (as `rpc-registry` reads them at start: from a key to the end
of the prefix, with a limit) from four places in the prefix, 100 and 1,000 keys a page, through etcd's JSON
gateway (`/v3/kv/range`), and prints the best of five times with the `count` etcd answers: the keys from the
page's start to the end of the range, which etcd 3.4 walks for every page whatever its limit. The services are
registry-load's (`load-000` to `load-099`). Python 3 standard library only.
"""

import base64
import json
import sys
import time
import urllib.request

PREFIX, END = "/rpc-registry/instances/", "/rpc-registry/instances0"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def page(endpoint, start, limit):
    """One range read: its time in seconds and etcd's answer."""
    body = json.dumps({"key": b64(PREFIX + start), "range_end": b64(END), "limit": limit}).encode()
    began = time.perf_counter()
    with urllib.request.urlopen(endpoint.rstrip("/") + "/v3/kv/range", body) as answer:
        out = json.load(answer)
    return time.perf_counter() - began, out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    endpoint = sys.argv[1]
    for start in ["load-000/", "load-050/", "load-090/", "load-099/"]:
        for limit in [100, 1000]:
            best = min(page(endpoint, start, limit)[0] for _ in range(5))
            _, out = page(endpoint, start, limit)
            print(f"from {start:10} limit {limit:5}: {best * 1000:7.2f} ms, {len(out.get('kvs', []))} keys "
                  f"returned, count {out.get('count')} (keys from here to the end)")


if __name__ == "__main__":
    main()
