#!/usr/bin/env python3
"""Command-line client for the API double's control API (see api_double.py).

    python3 test/double_ctl.py --port P COMMAND [JSON]

The port comes from --port, else --port-file, else $SQUADSTACK_DOUBLE_PORT.
A JSON argument may also be "-" (read standard input) or "@FILE" (read FILE).
Mutating commands print nothing on success, so their output can sit in expected
test output; failures print a message on stderr and exit non-zero.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

HOST = "127.0.0.1"
PORT_ENV = "SQUADSTACK_DOUBLE_PORT"

# No proxies: the double is on the loopback interface and a proxy set in the
# environment would otherwise be asked for it.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class CtlError(Exception):
    pass


def read_json_arg(text):
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        with open(text[1:], encoding="utf-8") as source:
            text = source.read()
    try:
        return json.loads(text)
    except ValueError as error:
        raise CtlError("not valid JSON: %s" % error) from None


def read_port_file(path):
    try:
        with open(path, encoding="ascii") as source:
            return int(source.read().strip())
    except (OSError, ValueError):
        return None


def resolve_port(args):
    """The port, or None when a port file has not been written yet."""
    if args.port is not None:
        return args.port
    if args.port_file:
        return read_port_file(args.port_file)
    if os.environ.get(PORT_ENV):
        try:
            return int(os.environ[PORT_ENV])
        except ValueError:
            raise CtlError("%s is not a port number" % PORT_ENV) from None
    raise CtlError("no port: give --port, --port-file or set %s" % PORT_ENV)


def call(port, method, path, body=None, timeout=10.0):
    """One control request; returns the parsed JSON answer or raises CtlError."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request("http://%s:%d/_double/%s" % (HOST, port, path),
                                     data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", "replace").strip()
        raise CtlError("HTTP %d from %s: %s" % (error.code, path, detail)) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CtlError("cannot reach the double on port %d: %s" % (port, reason)) from None


def wait_ready(args):
    """Poll health until it answers or the timeout passes."""
    deadline = time.monotonic() + args.timeout
    while True:
        port = resolve_port(args)
        if port is not None:
            try:
                call(port, "GET", "health", timeout=1.0)
                return
            except CtlError:
                pass
        if time.monotonic() >= deadline:
            raise CtlError("the double is not ready after %g s" % args.timeout)
        time.sleep(0.1)


def wait_webhooks(port, timeout):
    """Wait until no webhook is pending and no processing is scheduled."""
    deadline = time.monotonic() + timeout
    while True:
        status = call(port, "GET", "webhooks?since=%d" % (2 ** 62))
        if status["pending"] == 0 and status["scheduled"] == 0:
            return
        if time.monotonic() >= deadline:
            raise CtlError("%d webhook(s) pending and %d lead(s) scheduled after %g s"
                           % (status["pending"], status["scheduled"], timeout))
        time.sleep(0.05)


def run(args):
    if args.command == "wait-ready":
        wait_ready(args)
        return
    port = resolve_port(args)
    if port is None:
        raise CtlError("no port yet in %s" % args.port_file)
    command = args.command
    if command == "reset":
        call(port, "POST", "reset", read_json_arg(args.json) if args.json else {})
    elif command == "fault":
        call(port, "POST", "fault", read_json_arg(args.json))
    elif command == "clear-faults":
        call(port, "POST", "faults/clear", {})
    elif command == "config":
        call(port, "POST", "config", read_json_arg(args.json))
    elif command == "outcomes":
        call(port, "POST", "outcomes", read_json_arg(args.json))
    elif command == "process":
        call(port, "POST", "process", read_json_arg(args.json))
    elif command == "webhooks":
        for record in call(port, "GET", "webhooks?since=%d" % args.since)["attempts"]:
            print(json.dumps(record))
    elif command == "wait-webhooks":
        wait_webhooks(port, args.timeout)
    elif command == "requests":
        for record in call(port, "GET", "requests?since=%d" % args.since):
            print(json.dumps(record))
    elif command in ("leads", "faults", "health"):
        print(json.dumps(call(port, "GET", command), sort_keys=True))
    elif command == "get-config":
        print(json.dumps(call(port, "GET", "config"), sort_keys=True))


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Control the SquadStack API double.")
    parser.add_argument("--port", type=int, help="the double's port (else $%s)" % PORT_ENV)
    parser.add_argument("--port-file", help="read the port from this file")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    reset = commands.add_parser("reset", help="forget requests, leads, faults, outcomes")
    reset.add_argument("json", nargs="?", help='optional: {"defaults": true} and/or config keys')
    for name, what in (("fault", "one fault rule or an array of them"),
                       ("config", "config keys to change"),
                       ("outcomes", "one webhook-shaped outcome or an array of them")):
        sub = commands.add_parser(name, help=what)
        sub.add_argument("json", help=what + " (JSON, - for stdin, @FILE)")
    process = commands.add_parser("process", help="process leads and queue their webhooks")
    process.add_argument("json", help='{"campaign": C, "lead_ids"?, "outcome"?, "lead_responses"?, '
                         '"processed_at"?} (JSON, - for stdin, @FILE)')
    webhooks = commands.add_parser("webhooks", help="print webhook attempts, one per line")
    webhooks.add_argument("--since", type=int, default=0, help="only attempts with seq > SINCE")
    waiting = commands.add_parser("wait-webhooks",
                                  help="wait until no webhook is pending or lead scheduled")
    waiting.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    commands.add_parser("clear-faults", help="remove every fault rule")
    requests = commands.add_parser("requests", help="print recorded requests, one per line")
    requests.add_argument("--since", type=int, default=0, help="only records with seq > SINCE")
    commands.add_parser("leads", help="print the stored leads")
    commands.add_parser("faults", help="print the fault rules in force")
    commands.add_parser("get-config", help="print the current config")
    commands.add_parser("health", help="print the health answer")
    ready = commands.add_parser("wait-ready", help="wait until the double answers")
    ready.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except CtlError as error:
        print("double_ctl: %s" % error, file=sys.stderr)
        return 1
    except OSError as error:
        print("double_ctl: %s" % error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
