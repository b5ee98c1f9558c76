#!/usr/bin/env python3
"""Calls calc-server's Calc over HTTP and JSON with Python's standard library alone (docs/PROTOCOL.md section 16).

    cargo run -p rpc-registry -- serve                      # calc-server registers with it
    cargo run -p examples --bin calc-server -- --listen 127.0.0.1:7000 --http
    python3 examples/python/calc_client.py [HOST:PORT]     # 127.0.0.1:7000 unless given

Calls Calc.add {"a":2,"b":3}, Calc.div {"a":7,"b":2} and Calc.div {"a":1,"b":0} (the last one is the method's
own error: HTTP 422, "error": "CalcError", "detail": "DivisionByZero"), prints one line for each, and exits 1 if
an answer is not the one expected (2 if a call fails: the server cannot be reached, its answer is not JSON).
"""

import json
import sys
import urllib.error
import urllib.request

DEFAULT_ADDRESS = "127.0.0.1:7000"


def call(address, method, args):
    """POSTs `args` to /Calc/`method`; the HTTP status and the JSON of the body."""
    request = urllib.request.Request(
        f"http://{address}/Calc/{method}",
        data=json.dumps(args).encode(),
        headers={"content-type": "application/json", "rpc-timeout-ms": "5000"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        # Failures and the method's own error are answers too, with a JSON body.
        return error.code, json.load(error)


def shown(status, body):
    """An answer as a line: the value and the instance that computed it, or the error."""
    if status == 200:
        return f"{body['value']} (from {body['instance']})"
    if status == 422:
        return f"422 {body['error']}: {json.dumps(body['detail'])}"
    return f"{status} {body.get('code')}: {body.get('message')}"


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_ADDRESS
    expected = [
        ("add", {"a": 2, "b": 3}, 200, lambda body: body["value"] == 5),
        ("div", {"a": 7, "b": 2}, 200, lambda body: body["value"] == 3),
        (
            "div",
            {"a": 1, "b": 0},
            422,
            lambda body: body
            == {"code": "application_error", "error": "CalcError", "detail": "DivisionByZero"},
        ),
    ]
    unexpected = 0
    for method, args, want, check in expected:
        try:
            status, body = call(address, method, args)
        except (urllib.error.URLError, OSError, ValueError) as error:
            print(f"calc_client: calling Calc.{method} at {address} failed: {error}", file=sys.stderr)
            return 2
        print(f"Calc.{method} {json.dumps(args)} -> {shown(status, body)}")
        if status != want or not check(body):
            print(f"calc_client: expected HTTP {want} for Calc.{method}, got {status} {body}", file=sys.stderr)
            unexpected += 1
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
