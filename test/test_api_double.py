#!/usr/bin/env python3
"""Self-test of the API double: python3 test/test_api_double.py

Starts the double on a free port of 127.0.0.1 and checks the endpoints, errors,
rate limit, faults, recording, the responses endpoint, the control API, the CLI and
the lead-processed webhooks, which go to a small receiver on 127.0.0.1 in this test.
"""

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLE = os.path.join(HERE, "api_double.py")
CTL = os.path.join(HERE, "double_ctl.py")
TOKEN = "test-token"
CAMPAIGN_TOKEN = "camp2-token"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def start_double(workdir, *extra):
    """Start the double; returns (process, port, stderr file). The caller must stop it."""
    name = os.path.join(workdir, "double-%d" % time.monotonic_ns())
    port_file, stderr_file = name + ".port", name + ".stderr"
    # stderr goes to a file: a pipe nobody reads could fill up and stall the double.
    with open(stderr_file, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, DOUBLE, "--port", "0", "--port-file", port_file,
                                 *extra], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr)
    deadline = time.monotonic() + 10
    while not os.path.exists(port_file):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            with open(stderr_file, encoding="utf-8", errors="replace") as err:
                raise RuntimeError("the double did not start: " + err.read())
        time.sleep(0.02)
    with open(port_file, encoding="ascii") as source:
        return proc, int(source.read()), stderr_file


def stop_process(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# One double serves every DoubleTestCase; each test starts from a reset.
DOUBLE_RUN = {}


def setUpModule():
    tmp = tempfile.TemporaryDirectory()
    unittest.addModuleCleanup(tmp.cleanup)
    log_path = os.path.join(tmp.name, "requests.jsonl")
    proc, port, stderr_file = start_double(
        tmp.name, "--token", TOKEN, "--campaign-token", "camp2=" + CAMPAIGN_TOKEN,
        "--rate-limit", "3", "--rate-window", "1", "--log", log_path,
        "--max-lifetime", "120", "--parent-pid", str(os.getpid()))
    unittest.addModuleCleanup(stop_process, proc)
    DOUBLE_RUN.update(port=port, log_path=log_path, stderr_file=stderr_file)


def lead(lead_id, phone="9876543210", name="Test Lead", **custom):
    return dict(lead_id=lead_id, phone_number=phone, contact_name=name, **custom)


class DoubleTestCase(unittest.TestCase):
    """Tests against the module's double, which each test first resets."""

    def setUp(self):
        self.port = DOUBLE_RUN["port"]
        self.log_path = DOUBLE_RUN["log_path"]
        # Most tests send more than 3 requests a second; the rate-limit test restores 3/1s.
        self.control("POST", "reset", {"defaults": True, "rate_limit": 1000})

    # -- helpers -----------------------------------------------------------

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def http(self, method, path, body=None, token=TOKEN, content_type="application/json",
             raw=None, headers=None):
        """Send one request; returns (status, headers, body text). Never raises on 4xx/5xx."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url(path), data=data, method=method)
        if token is not None:
            request.add_header("Authorization", "Bearer " + token)
        if data is not None and content_type is not None:
            request.add_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with OPENER.open(request, timeout=10) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    def api(self, method, endpoint, campaign="camp1", body=None, **kwargs):
        status, headers, text = self.http(method, "/api/v4/leads/%s/%s/" % (endpoint, campaign),
                                          body, **kwargs)
        return status, headers, text

    def assertAnswer(self, result, status, body=None):
        code, _, text = result
        self.assertEqual(code, status, text)
        if body is not None:
            self.assertEqual(json.loads(text), body)

    def control(self, method, path, body=None):
        status, _, text = self.http(method, "/_double/" + path, body, token=None)
        self.assertEqual(status, 200, text)
        return json.loads(text)

    def records(self, since=0):
        return self.control("GET", "requests?since=%d" % since)

    def leads(self):
        return self.control("GET", "leads")

    def create(self, *leads, campaign="camp1"):
        return self.api("POST", "create", campaign, list(leads))


class EndpointTest(DoubleTestCase):

    def test_create_and_record(self):
        self.assertAnswer(self.create(lead("a", x="1", flag=True), lead(7, "+911123456789")),
                          201, {"created": 2})
        self.assertAnswer(self.api("POST", "create", body=lead("b", "919876543210")),
                          201, {"created": 1})
        stored = self.leads()["camp1"]
        self.assertEqual(sorted(stored), ["7", "a", "b"])
        self.assertEqual(stored["a"], {"fields": lead("a", x="1", flag=True),
                                       "state": "created", "detail": None})
        first = self.records()[0]
        self.assertEqual(first["seq"], 1)
        self.assertEqual(first["method"], "POST")
        self.assertEqual(first["path"], "/api/v4/leads/create/camp1/")
        self.assertEqual(first["endpoint"], "create")
        self.assertEqual(first["campaign"], "camp1")
        self.assertEqual(first["authorization"], "Bearer " + TOKEN)
        self.assertEqual(first["content_type"], "application/json")
        self.assertEqual(first["body"], [lead("a", x="1", flag=True), lead(7, "+911123456789")])
        self.assertEqual(json.loads(first["raw_body"]), first["body"])
        self.assertEqual(first["body_bytes"], len(first["raw_body"].encode()))
        self.assertEqual(first["status"], 201)
        self.assertIsNone(first["fault"])
        self.assertEqual(first["lead_ids"], ["a", "7"])
        self.assertEqual(first["query"], {})
        self.assertLessEqual(first["received_at"], first["answered_at"])

    def test_create_rejections(self):
        self.create(lead("old"))
        cases = [
            ([lead("x", "0876543210")], "x"),          # national number starts with 0
            ([lead("x", "98765")], "x"),
            ([lead("x", 9876543210)], "x"),            # not a string
            ([lead("x", "+929876543210")], "x"),
            ([{"lead_id": "x", "phone_number": "9876543210"}], "x"),
            ([lead("x", name="")], "x"),
            ([lead("x", extra={"a": 1})], "x"),
            ([lead("x", extra=[1])], "x"),
            ([lead("ok"), lead("ok")], "ok"),           # duplicate in the call
            ([lead("new"), lead("old")], "old"),        # exists already
            ([{"phone_number": "9876543210", "contact_name": "A"}], None),
            ([lead("")], ""),
            ([lead("y" * 256)], "y" * 256),
            ([lead(1.5)], None),
            ([], None),
            (["not an object"], None),
        ]
        for body, bad_id in cases:
            with self.subTest(body=body):
                code, _, text = self.api("POST", "create", body=body)
                self.assertEqual(code, 400, text)
                answer = json.loads(text)
                self.assertIsInstance(answer["error"], str)
                self.assertEqual(answer["lead_id"], bad_id)
        self.create(lead(1))
        self.assertAnswer(self.create(lead("1")), 400, {"error": "lead already exists", "lead_id": "1"})
        self.assertEqual(sorted(self.leads()["camp1"]), ["1", "old"])  # nothing partial

    def test_auth(self):
        body = [lead("a")]
        self.assertAnswer(self.api("POST", "create", body=body, token=None), 401,
                          {"detail": "Authentication credentials were not provided."})
        self.assertAnswer(self.api("POST", "create", body=body, token=None,
                                   headers={"Authorization": "Token " + TOKEN}), 401)
        self.assertAnswer(self.api("POST", "create", body=body, token="wrong"), 403,
                          {"detail": "You do not have permission to perform this action."})
        self.assertAnswer(self.api("POST", "create", "camp1", body, token=CAMPAIGN_TOKEN), 403)
        self.assertAnswer(self.api("POST", "create", "camp2", body, token=CAMPAIGN_TOKEN), 201)
        self.assertEqual([r["status"] for r in self.records()], [401, 401, 403, 403, 201])

    def test_routes(self):
        self.assertAnswer(self.http("GET", "/api/v4/leads/create/camp1/"), 405,
                          {"detail": 'Method "GET" not allowed.'})
        self.assertAnswer(self.http("POST", "/api/v4/leads/update/camp1/", {"lead_id": 1}), 405,
                          {"detail": 'Method "POST" not allowed.'})
        self.assertAnswer(self.http("POST", "/api/v4/leads/nothing/camp1/", []), 404,
                          {"detail": "Not found."})
        self.assertAnswer(self.http("POST", "/api/v4/leads/create/bad.camp/", [lead("a")]), 404)
        self.assertAnswer(self.http("POST", "/elsewhere", []), 404)
        self.assertAnswer(self.http("POST", "/api/v4/leads/create/camp1", [lead("a")]), 201)
        record = self.records()[-2]
        self.assertIsNone(record["endpoint"])
        self.assertIsNone(record["campaign"])
        self.assertEqual(self.records()[0]["endpoint"], "create")

    def test_body_errors(self):
        self.assertAnswer(self.api("POST", "create", raw=b"[{"), 400, {"error": "invalid JSON"})
        self.assertAnswer(self.api("POST", "create", raw=b""), 400, {"error": "invalid JSON"})
        self.assertAnswer(self.api("POST", "create", raw=b"[NaN]"), 400, {"error": "invalid JSON"})
        code, _, text = self.api("POST", "create", body=[lead("a")], content_type="text/plain")
        self.assertEqual(code, 400, text)
        self.assertEqual(self.records()[0]["raw_body"], "[{")
        self.assertIsNone(self.records()[0]["body"])

    def test_disable(self):
        self.create(lead("a"), lead("b"))
        self.assertAnswer(self.api("POST", "disable", body=[{"lead_id": "a"}, {"lead_id": "zz"}]),
                          400, {"error": "lead does not exist", "lead_id": "zz"})
        self.assertEqual(self.leads()["camp1"]["a"]["state"], "created")
        self.assertAnswer(self.api("POST", "disable", body=[{"lead_id": "a"}, {"lead_id": "b"}]),
                          201, {"disabled": 2})
        self.assertAnswer(self.api("POST", "disable", body={"lead_id": "a"}), 201, {"disabled": 1})
        self.assertEqual(self.leads()["camp1"]["b"]["state"], "disabled")
        self.assertEqual(self.records()[-1]["lead_ids"], ["a"])
        self.assertAnswer(self.api("POST", "disable", "other", [{"lead_id": "a"}]), 400)

    def test_delete(self):
        self.create(lead("a"), lead(5))
        self.assertAnswer(self.api("POST", "delete", body={"lead_id": "a"}), 202, {"deleted": "a"})
        self.assertAnswer(self.api("POST", "delete", body={"lead_id": 5}), 202, {"deleted": "5"})
        self.assertEqual(self.leads()["camp1"]["a"], {"fields": {}, "state": "deleted", "detail": None})
        self.assertAnswer(self.api("POST", "delete", body={"lead_id": "a"}), 404, {"detail": "Not found."})
        self.assertAnswer(self.api("POST", "delete", body={"lead_id": "never"}), 404)
        self.assertAnswer(self.api("POST", "delete", body={}), 400)
        self.assertAnswer(self.api("POST", "disable", body={"lead_id": "a"}), 400)
        self.assertAnswer(self.create(lead("a")), 201)  # a deleted lead_id can be used again

    def test_update(self):
        self.create(lead("a", plan="Lite"))
        self.assertAnswer(self.api("PATCH", "update", body={"lead_id": "a", "plan": "Pro",
                                                            "phone_number": "+919000000000"}),
                          200, {"updated": "a"})
        fields = self.leads()["camp1"]["a"]["fields"]
        self.assertEqual(fields["plan"], "Pro")
        self.assertEqual(fields["phone_number"], "+919000000000")
        self.assertEqual(fields["contact_name"], "Test Lead")
        self.assertAnswer(self.api("PATCH", "update", body={"lead_id": "a"}), 400)
        self.assertAnswer(self.api("PATCH", "update", body={"lead_id": "a", "phone_number": "12"}), 400,
                          {"error": "invalid phone_number", "lead_id": "a"})
        self.assertAnswer(self.api("PATCH", "update", body={"lead_id": "b", "plan": "x"}), 404)

    def test_convert(self):
        self.create(lead("a"))
        self.assertAnswer(self.api("POST", "convert", body={"lead_id": "a", "detail": "paid"}),
                          200, {"converted": "a"})
        self.assertEqual(self.leads()["camp1"]["a"]["state"], "converted")
        self.assertEqual(self.leads()["camp1"]["a"]["detail"], "paid")
        self.assertAnswer(self.api("POST", "convert", body={"lead_id": "a", "detail": "x" * 33}), 400)
        self.assertAnswer(self.api("POST", "convert", body={"lead_id": "a"}), 400)
        self.assertAnswer(self.api("POST", "convert", body={"lead_id": "b", "detail": "x"}), 404)

    def test_keep_alive(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        self.addCleanup(connection.close)
        headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
        for index in range(3):
            connection.request("POST", "/api/v4/leads/create/camp1/",
                               json.dumps([lead(index)]), headers)
            response = connection.getresponse()
            self.assertEqual(response.status, 201)
            self.assertEqual(response.getheader("Content-Length"), str(len(response.read())))
        self.assertEqual(len(self.leads()["camp1"]), 3)


class RateLimitTest(DoubleTestCase):

    def test_sliding_window(self):
        self.control("POST", "reset", {"defaults": True})  # back to 3 per 1 s
        self.assertEqual(self.control("GET", "config")["rate_limit"], 3)
        started = time.monotonic()
        for index in range(3):
            self.assertAnswer(self.create(lead(index)), 201)
        code, headers, text = self.create(lead("over"))
        self.assertEqual(code, 429)
        self.assertEqual(json.loads(text), {"detail": "Request was throttled."})
        self.assertEqual(headers["Retry-After"], "1")
        self.assertEqual(self.records()[-1]["status"], 429)
        # Another token has its own window; auth failures do not count.
        self.assertAnswer(self.api("POST", "create", body=[lead("c")], token="wrong"), 403)
        self.assertAnswer(self.api("POST", "create", "camp2", [lead("c")], token=CAMPAIGN_TOKEN), 201)
        time.sleep(max(0.0, 1.05 - (time.monotonic() - started)))
        self.assertAnswer(self.create(lead("later")), 201)  # the 429 was not counted
        self.assertNotIn("over", self.leads()["camp1"])


class FaultTest(DoubleTestCase):

    def test_status_fault(self):
        self.control("POST", "fault", {"kind": "status", "status": 503, "retry_after": "2",
                                       "count": 1, "endpoint": "create"})
        self.assertAnswer(self.api("POST", "disable", body={"lead_id": "x"}), 400)  # not matched
        code, headers, text = self.create(lead("a"))
        self.assertEqual((code, headers["Retry-After"]), (503, "2"))
        self.assertEqual(json.loads(text), {"detail": "injected 503"})
        self.assertEqual(self.records()[-1]["fault"], "status")
        self.assertEqual(self.leads(), {})  # no effect
        self.assertAnswer(self.create(lead("a")), 201)  # count used up
        self.assertEqual(self.control("GET", "faults"), [])

    def test_status_fault_body_and_filters(self):
        self.control("POST", "fault", [
            {"kind": "status", "status": 500, "body": "<h1>oops</h1>", "campaign": "other"},
            {"kind": "status", "status": 502, "body": "bad gateway", "method": "post", "count": 2},
        ])
        code, headers, text = self.create(lead("a"))
        self.assertEqual((code, text, headers["Content-Type"]), (502, "bad gateway", "text/plain"))
        self.assertNotIn("Retry-After", headers)
        code, _, text = self.create(lead("a"), campaign="other")
        self.assertEqual((code, text), (500, "<h1>oops</h1>"))  # first matching rule wins
        self.assertEqual(self.create(lead("a"))[0], 502)
        self.assertEqual(self.create(lead("a"), campaign="other")[0], 500)  # count null: forever
        self.assertAnswer(self.create(lead("a")), 201)
        self.control("POST", "faults/clear")
        self.assertAnswer(self.create(lead("b"), campaign="other"), 201)

    def test_maintenance(self):
        self.control("POST", "fault", {"kind": "maintenance", "count": 1})
        code, headers, text = self.create(lead("a"))
        self.assertEqual((code, headers["Retry-After"]), (503, "1"))
        self.assertEqual(json.loads(text), {"detail": "Service temporarily unavailable, try again later."})
        self.assertEqual(self.records()[-1]["fault"], "maintenance")

    def test_delay_does_not_block_others(self):
        self.control("POST", "fault", {"kind": "delay", "seconds": 0.4, "count": 1, "endpoint": "create"})
        results = {}
        slow = threading.Thread(target=lambda: results.setdefault("slow", self.create(lead("a"))))
        started = time.monotonic()
        slow.start()
        time.sleep(0.05)
        self.assertAnswer(self.api("POST", "disable", body={"lead_id": "zz"}), 400)
        self.assertLess(time.monotonic() - started, 0.35)  # answered while the other sleeps
        slow.join(5)
        self.assertGreaterEqual(time.monotonic() - started, 0.4)
        self.assertAnswer(results["slow"], 201, {"created": 1})
        record = [r for r in self.records() if r["endpoint"] == "create"][0]
        self.assertEqual((record["seq"], record["fault"]), (1, "delay"))
        self.assertGreaterEqual(record["answered_at"] - record["received_at"], 0.4)

    def test_delay_after_effect(self):
        # the work is done at once, the answer comes late
        self.control("POST", "fault", {"kind": "delay", "seconds": 0.5, "after_effect": True,
                                       "count": 1})
        results = {}
        slow = threading.Thread(target=lambda: results.setdefault("slow", self.create(lead("a"))))
        started = time.monotonic()
        slow.start()
        deadline = started + 5
        while "a" not in self.leads().get("camp1", {}) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertLess(time.monotonic() - started, 0.4)  # stored before the answer
        self.assertNotIn("slow", results)
        slow.join(5)
        self.assertGreaterEqual(time.monotonic() - started, 0.5)
        self.assertAnswer(results["slow"], 201, {"created": 1})
        self.assertEqual(self.records()[-1]["fault"], "delay")
        self.assertAnswer(self.create(lead("a")), 400, {"error": "lead already exists", "lead_id": "a"})

    def test_drop(self):
        self.control("POST", "fault", {"kind": "drop", "count": 1})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        self.addCleanup(connection.close)
        connection.request("POST", "/api/v4/leads/create/camp1/", json.dumps([lead("a")]),
                           {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
        with self.assertRaises(http.client.RemoteDisconnected):
            connection.getresponse()
        record = self.records()[-1]
        self.assertEqual((record["status"], record["fault"], record["lead_ids"]), (None, "drop", ["a"]))
        self.assertEqual(self.leads(), {})

    def test_nonjson(self):
        self.control("POST", "fault", {"kind": "nonjson", "count": 1})
        code, headers, text = self.create(lead("a"))
        self.assertEqual((code, text), (201, "<html>OK</html>"))
        self.assertEqual(headers["Content-Type"], "text/html")
        self.assertIn("a", self.leads()["camp1"])  # the effect happened

    def test_faults_come_after_auth(self):
        self.control("POST", "fault", {"kind": "status", "status": 500, "count": 1})
        self.assertAnswer(self.api("POST", "create", body=[lead("a")], token="wrong"), 403)
        self.assertEqual(self.create(lead("a"))[0], 500)

    def test_bad_rule(self):
        for rule in ({"kind": "boom"}, {"kind": "status"}, {"kind": "delay"},
                     {"kind": "drop", "count": 0}, {"kind": "drop", "endpoint": "nope"},
                     {"kind": "drop", "typo": 1}, {"kind": "drop", "after_effect": True},
                     {"kind": "delay", "seconds": 1, "after_effect": "yes"}):
            with self.subTest(rule=rule):
                code, _, _ = self.http("POST", "/_double/fault", rule, token=None)
                self.assertEqual(code, 400)
        self.assertEqual(self.control("GET", "faults"), [])


class ResponsesTest(DoubleTestCase):

    def outcome(self, lead_id, processed_at, campaign="camp1"):
        return {"phone_number": "+919876543210", "lead_id": lead_id, "campaign_id": campaign,
                "latest_recording_url": "https://example.invalid/rec",
                "latest_called_at": "2018-12-03T14:36:38+00:00",
                "lead_outcome": "Connected : Objective Met", "processed_at": processed_at,
                "contact_name": "Test Lead", "created_at": "2018-12-03T14:36:01+00:00",
                "lead_responses": {"key": "value"}}

    def setUp(self):
        super().setUp()
        self.outcomes = [
            self.outcome("e", "2018-12-03T14:40:00+00:00"),
            self.outcome("a", "2018-12-03T20:07:00+05:30"),   # 14:37 UTC
            self.outcome("c", 1543847880),                   # 14:38 UTC, epoch
            self.outcome("b", "2018-12-03T14:37:00Z"),       # same time as "a"
            self.outcome("d", "2018-12-03T14:39:00+00:00"),
            self.outcome("z", "2018-12-03T14:37:00+00:00", campaign="camp2"),
        ]
        self.control("POST", "outcomes", self.outcomes)

    def page(self, query):
        code, _, text = self.http("GET", "/api/v4/leads/responses/camp1/" + query)
        self.assertEqual(code, 200, text)
        return json.loads(text)

    def test_paging(self):
        first = self.page("?page_size=2")
        self.assertEqual(first["count"], 5)
        self.assertEqual([r["lead_id"] for r in first["results"]], ["a", "b"])
        self.assertEqual(first["results"][0], self.outcomes[1])
        self.assertIsNone(first["previous"])
        self.assertEqual(first["next"], self.url("/api/v4/leads/responses/camp1/?page_size=2&page=2"))
        second = self.page(first["next"][len(self.url("/api/v4/leads/responses/camp1/")):])
        self.assertEqual([r["lead_id"] for r in second["results"]], ["c", "d"])
        self.assertEqual(second["previous"], self.url("/api/v4/leads/responses/camp1/?page_size=2"))
        third = self.page("?page_size=2&page=3")
        self.assertEqual(([r["lead_id"] for r in third["results"]], third["next"]), (["e"], None))
        self.assertAnswer(self.http("GET", "/api/v4/leads/responses/camp1/?page_size=2&page=4"),
                          404, {"detail": "Invalid page."})
        self.assertEqual(self.records()[-1]["query"], {"page_size": "2", "page": "4"})

    def test_filters(self):
        only = self.page("?lead_id=c")
        self.assertEqual((only["count"], only["results"][0]["lead_id"]), (1, "c"))
        window = self.page("?processed_after=1543847880&processed_before=1543847940.0")
        self.assertEqual([r["lead_id"] for r in window["results"]], ["c"])  # after inclusive
        self.assertEqual(self.page("?processed_after=1543848000.5")["count"], 0)
        self.assertAnswer(self.http("GET", "/api/v4/leads/responses/camp1/?processed_after=soon"), 400)
        self.assertEqual(self.page("")["count"], 5)
        self.control("POST", "outcomes", self.outcome("a", "2018-12-03T14:41:00+00:00"))  # replaces
        self.assertEqual([r["lead_id"] for r in self.page("")["results"]], ["b", "c", "d", "e", "a"])

    def test_disabled_and_auth(self):
        self.assertAnswer(self.http("GET", "/api/v4/leads/responses/camp1/", token="wrong"), 403)
        self.assertAnswer(self.http("POST", "/api/v4/leads/responses/camp1/", {}), 405)
        self.control("POST", "config", {"responses_enabled": False})
        self.assertAnswer(self.http("GET", "/api/v4/leads/responses/camp1/"), 404,
                          {"detail": "Not found."})

    def test_bad_outcome(self):
        code, _, _ = self.http("POST", "/_double/outcomes", {"lead_id": "x"}, token=None)
        self.assertEqual(code, 400)
        code, _, _ = self.http("POST", "/_double/outcomes",
                               self.outcome("x", "yesterday"), token=None)
        self.assertEqual(code, 400)


class ControlTest(DoubleTestCase):

    def test_reset_and_log(self):
        self.create(lead("a"))
        self.create(lead("b"))
        self.control("POST", "fault", {"kind": "drop"})
        self.assertEqual([r["seq"] for r in self.records(since=1)], [2])
        mode = stat.S_IMODE(os.stat(self.log_path).st_mode)
        self.assertEqual(mode, 0o644)
        with open(self.log_path, encoding="utf-8") as log:
            self.assertEqual([json.loads(line) for line in log], self.records())
        self.control("POST", "reset")
        self.assertEqual((self.records(), self.leads(), self.control("GET", "faults")), ([], {}, []))
        self.assertEqual(os.path.getsize(self.log_path), 0)
        self.assertAnswer(self.create(lead("a")), 201)  # token kept, lead store empty
        self.assertEqual(self.records()[0]["seq"], 1)
        with open(self.log_path, encoding="utf-8") as log:
            self.assertEqual(len(log.readlines()), 1)

    def test_config(self):
        self.control("POST", "config", {"tokens": ["new"], "campaign_tokens": {"camp1": "c1tok"}})
        self.assertAnswer(self.create(lead("a")), 403)
        self.assertAnswer(self.api("POST", "create", body=[lead("a")], token="new"), 201)
        self.assertAnswer(self.api("POST", "create", body=[lead("b")], token="c1tok"), 201)
        code, _, _ = self.http("POST", "/_double/config", {"rate_limit": 0}, token=None)
        self.assertEqual(code, 400)
        self.control("POST", "reset", {"defaults": True})
        self.assertEqual(self.control("GET", "config")["tokens"], [TOKEN])

    def test_max_body(self):
        small, large = [lead("a")], [lead("b", note="x" * 300)]
        limit = len(json.dumps(small)) + 10
        self.control("POST", "config", {"max_body": limit, "rate_limit": 2})
        self.assertEqual(self.control("GET", "config")["max_body"], limit)
        self.control("POST", "fault", {"kind": "status", "status": 500, "count": 1})
        code, headers, text = self.create(*large)
        self.assertEqual((code, json.loads(text)), (413, {"detail": "Request body too large."}))
        self.assertNotIn("Connection", headers)  # read whole: the connection stays usable
        record = self.records()[-1]
        self.assertEqual((record["status"], record["lead_ids"], record["fault"]), (413, ["b"], None))
        self.assertEqual(record["body_bytes"], len(json.dumps(large)))
        self.assertEqual(self.leads(), {})
        # neither the fault nor the rate limit saw it
        self.assertAnswer(self.create(*small), 500)
        self.assertAnswer(self.api("PATCH", "update", body={"lead_id": "a", "x": "y" * 300}), 413)
        self.assertAnswer(self.create(*small), 201)
        self.assertEqual(self.create(lead("c"))[0], 429)
        for bad in (0, -1, "100", 1.5, 16 * 1024 * 1024 + 1):
            code, _, _ = self.http("POST", "/_double/config", {"max_body": bad}, token=None)
            self.assertEqual(code, 400, bad)
        self.control("POST", "config", {"max_body": None, "rate_limit": 1000})
        self.assertAnswer(self.create(*large), 201)

    def test_body_too_large_to_read(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        self.addCleanup(connection.close)
        connection.putrequest("POST", "/api/v4/leads/create/camp1/")
        connection.putheader("Authorization", "Bearer " + TOKEN)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(16 * 1024 * 1024 + 1))
        connection.endheaders()
        response = connection.getresponse()
        self.assertEqual((response.status, response.getheader("Connection")), (413, "close"))
        record = self.records()[-1]
        self.assertEqual((record["status"], record["body_bytes"]), (413, 16 * 1024 * 1024 + 1))

    def test_control_errors(self):
        self.assertEqual(self.http("GET", "/_double/nothing", token=None)[0], 404)
        self.assertEqual(self.http("GET", "/_double/reset", token=None)[0], 405)
        self.assertEqual(self.http("POST", "/_double/config", raw=b"{", token=None)[0], 400)
        self.assertEqual(self.records(), [])  # control requests are not recorded

    def test_quiet(self):
        self.create(lead("a"))
        self.assertAnswer(self.create(lead("a")), 400)
        self.control("POST", "fault", {"kind": "drop", "count": 1})
        self.assertRaises(OSError, self.create, lead("b"))
        self.assertAnswer(self.http("GET", "/nowhere"), 404)
        with open(DOUBLE_RUN["stderr_file"], encoding="utf-8") as err:
            self.assertEqual(err.read(), "")

    def test_cli(self):
        env = dict(os.environ, SQUADSTACK_DOUBLE_PORT=str(self.port))

        def ctl(*args, use_env=False):
            argv = [sys.executable, CTL] + ([] if use_env else ["--port", str(self.port)])
            return subprocess.run(argv + list(args), env=env, capture_output=True, text=True,
                                  timeout=20)

        for args in (["wait-ready", "--timeout", "2"], ["fault", '{"kind": "maintenance"}'],
                     ["clear-faults"], ["config", '{"rate_limit": 500}'],
                     ["outcomes", '{"campaign_id": "c", "lead_id": 1}']):
            done = ctl(*args)
            self.assertEqual((done.returncode, done.stdout, done.stderr), (0, "", ""), args)
        self.assertEqual(json.loads(ctl("health", use_env=True).stdout), {"ok": True})
        self.create(lead("a"))
        self.create(lead("b"))
        lines = ctl("requests").stdout.splitlines()
        self.assertEqual([json.loads(line)["lead_ids"] for line in lines], [["a"], ["b"]])
        self.assertEqual(list(json.loads(ctl("leads").stdout)["camp1"]), ["a", "b"])
        self.assertEqual(ctl("reset").returncode, 0)
        self.assertEqual(self.records(), [])
        bad = ctl("fault", "{not json")
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("JSON", bad.stderr)
        self.assertNotEqual(ctl("fault", '{"kind": "boom"}').returncode, 0)
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            closed_port = unused.getsockname()[1]
        done = subprocess.run([sys.executable, CTL, "--port", str(closed_port), "wait-ready",
                               "--timeout", "0.3"], capture_output=True, text=True, timeout=20)
        self.assertEqual(done.returncode, 1)
        self.assertTrue(done.stderr)


class Receiver:
    """A webhook receiver on 127.0.0.1: answers each POST with the next action of
    its script (a status, or (seconds, status) to answer late), then 201."""

    def __init__(self):
        self.lock = threading.Lock()
        self.script = []
        self.got = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.got.append({"path": self.path, "headers": dict(self.headers),
                                         "body": body, "at": time.monotonic()})
                    action = receiver.script.pop(0) if receiver.script else 201
                if isinstance(action, tuple):
                    time.sleep(action[0])
                    action = action[1]
                answer = json.dumps({"status": action}).encode()
                self.send_response(action)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # a sender that gave up waiting
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def answers(self, *actions):
        with self.lock:
            self.script = list(actions)

    def received(self):
        with self.lock:
            return list(self.got)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


WEBHOOK_KEYS = {"campaign_id", "lead_id", "phone_number", "contact_name", "lead_outcome",
                "latest_recording_url", "latest_called_at", "processed_at", "created_at",
                "lead_responses"}


class WebhookTest(DoubleTestCase):

    def setUp(self):
        super().setUp()
        self.receiver = Receiver()
        self.addCleanup(self.receiver.close)
        self.hook = "http://127.0.0.1:%d/squadstack/webhook/{campaign}/s3cret" % self.receiver.port
        self.control("POST", "config", {"webhook_url": self.hook, "webhook_retry_base": 0.05,
                                        "webhook_retry_max": 0.2, "webhook_timeout": 2})

    def webhooks(self):
        return self.control("GET", "webhooks")

    def wait_idle(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            status = self.webhooks()
            if status["pending"] == 0 and status["scheduled"] == 0:
                return status["attempts"]
            self.assertLess(time.monotonic(), deadline, status)
            time.sleep(0.02)

    def process(self, **request):
        return self.control("POST", "process", dict({"campaign": "camp1"}, **request))

    def process_error(self, request):
        code, _, text = self.http("POST", "/_double/process", request, token=None)
        self.assertEqual(code, 400, text)
        return json.loads(text)["error"]

    def summary(self, attempts):
        return [(a["lead_id"], a["attempt"], a["status"], a["error"], a["result"])
                for a in attempts]

    def test_payload_and_responses(self):
        self.create(lead("a", phone="9876543210", name="Asha"), lead(7, phone="+911123456789"))
        answer = self.process(outcome="Connected", lead_responses={"interest": "high"},
                              processed_at="2024-05-01T10:00:00+00:00")
        masked = "http://127.0.0.1:%d/squadstack/webhook/camp1/***" % self.receiver.port
        self.assertEqual(answer, {"processed": ["a", 7], "queued": 2, "webhook_url": masked})
        attempts = self.wait_idle()
        self.assertEqual(self.summary(attempts), [("a", 1, 201, None, "delivered"),
                                                  (7, 1, 201, None, "delivered")])
        self.assertEqual({a["url"] for a in attempts}, {masked})
        got = self.receiver.received()
        self.assertEqual([g["path"] for g in got], ["/squadstack/webhook/camp1/s3cret"] * 2)
        for g in got:
            self.assertEqual(g["headers"]["Content-Type"], "application/json")
            self.assertNotIn("Authorization", g["headers"])
        bodies = [json.loads(g["body"]) for g in got]
        self.assertEqual([set(b) for b in bodies], [WEBHOOK_KEYS] * 2)
        first = bodies[0]
        self.assertEqual((first["campaign_id"], first["lead_id"], first["phone_number"],
                          first["contact_name"], first["lead_outcome"], first["processed_at"],
                          first["lead_responses"]),
                         ("camp1", "a", "+919876543210", "Asha", "Connected",
                          "2024-05-01T10:00:00+00:00", {"interest": "high"}))
        self.assertEqual((bodies[1]["lead_id"], bodies[1]["phone_number"]), (7, "+911123456789"))
        for b in bodies:
            for key in ("latest_called_at", "processed_at", "created_at"):
                datetime_value = b[key]
                self.assertRegex(datetime_value, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
        self.assertEqual([a["payload"] for a in attempts], bodies)
        # the responses endpoint reports the same outcomes
        code, _, text = self.http("GET", "/api/v4/leads/responses/camp1/")
        self.assertEqual(code, 200, text)
        listed = sorted(json.loads(text)["results"], key=lambda r: str(r["lead_id"]))
        self.assertEqual(listed, sorted(bodies, key=lambda r: str(r["lead_id"])))
        # the secret is shown nowhere
        self.assertNotIn("s3cret", json.dumps(self.webhooks()) + json.dumps(self.control("GET", "config")))
        # only created leads not processed yet are processed by default
        self.assertEqual(self.process(), {"processed": [], "queued": 0, "webhook_url": None})
        self.create(lead("b"), lead("c"))
        self.api("POST", "disable", body=[{"lead_id": "c"}])
        self.assertEqual(self.process()["processed"], ["b"])
        # an explicit lead may be processed again: a new outcome, a new webhook
        self.assertEqual(self.process(lead_ids=["a"], outcome="Callback")["queued"], 1)
        self.wait_idle()
        self.assertEqual(json.loads(self.receiver.received()[-1]["body"])["lead_outcome"], "Callback")

    def test_retry_after_503(self):
        self.receiver.answers(503, 503, 201)
        self.create(lead("a"))
        self.process()
        attempts = self.wait_idle()
        self.assertEqual(self.summary(attempts), [("a", 1, 503, None, "retrying"),
                                                  ("a", 2, 503, None, "retrying"),
                                                  ("a", 3, 201, None, "delivered")])
        times = [g["at"] for g in self.receiver.received()]
        self.assertEqual(len(times), 3)
        # backoff doubles from webhook_retry_base (0.05 s)
        self.assertGreaterEqual(times[1] - times[0], 0.045)
        self.assertGreaterEqual(times[2] - times[1], 0.095)
        self.assertEqual(json.loads(attempts[0]["answer"]), {"status": 503})
        bodies = {g["body"] for g in self.receiver.received()}
        self.assertEqual(len(bodies), 1)  # the same payload each time

    def test_gives_up(self):
        self.control("POST", "config", {"webhook_attempts": 3})
        self.receiver.answers(500, 429, 502, 503, 503)
        self.create(lead("a"))
        self.process()
        attempts = self.wait_idle()
        self.assertEqual(self.summary(attempts), [("a", 1, 500, None, "retrying"),
                                                  ("a", 2, 429, None, "retrying"),
                                                  ("a", 3, 502, None, "gave_up")])
        time.sleep(0.3)
        self.assertEqual(len(self.receiver.received()), 3)

    def test_no_retry_on_4xx(self):
        self.receiver.answers(400, 403, 301)
        self.create(lead("a"), lead("b"), lead("c"))
        self.process()
        attempts = self.wait_idle()
        self.assertEqual(self.summary(attempts), [("a", 1, 400, None, "rejected"),
                                                  ("b", 1, 403, None, "rejected"),
                                                  ("c", 1, 301, None, "rejected")])
        time.sleep(0.2)
        self.assertEqual(len(self.receiver.received()), 3)

    def test_unreachable_and_timeout(self):
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            closed_port = unused.getsockname()[1]
        self.control("POST", "config", {
            "webhook_attempts": 2, "webhook_timeout": 0.5,
            "webhook_urls": {"camp2": "http://localhost:%d/hook/{campaign}/k" % closed_port}})
        self.create(lead("x"), campaign="camp2")
        self.assertEqual(self.process(campaign="camp2")["webhook_url"],
                         "http://localhost:%d/hook/camp2/***" % closed_port)
        self.assertEqual(self.summary(self.wait_idle()),
                         [("x", 1, None, "connection refused", "retrying"),
                          ("x", 2, None, "connection refused", "gave_up")])
        self.receiver.answers((1.5, 201), 201)
        self.create(lead("a"))
        self.process()
        self.assertEqual(self.summary(self.wait_idle())[2:],
                         [("a", 1, None, "timeout", "retrying"), ("a", 2, 201, None, "delivered")])

    def test_refuses_other_hosts(self):
        before = self.control("GET", "config")
        for url in ("http://10.0.0.1/hook", "http://192.168.1.1:8080/x", "http://example.com/x",
                    "http://127.0.0.2:80/x", "http://0.0.0.0:80/x", "https://127.0.0.1/x",
                    "ftp://127.0.0.1/x", "http://user:pw@127.0.0.1:80/x", "//127.0.0.1:80/x",
                    "127.0.0.1:80/x", "http://127.0.0.1.example.com/x", "http://{campaign}/x",
                    "http://127.0.0.1:0/x", "http://127.0.0.1:80/{lead}/x", "", 42):
            for key, value in (("webhook_url", url), ("webhook_urls", {"camp1": url})):
                code, _, text = self.http("POST", "/_double/config", {key: value}, token=None)
                self.assertEqual(code, 400, (key, url, text))
        self.assertEqual(self.control("GET", "config"), before)
        self.control("POST", "config", {"webhook_urls": {"camp1": "http://[::1]:8080/k"}})
        self.assertEqual(self.control("GET", "config")["webhook_urls"],
                         {"camp1": "http://[::1]:8080/***"})
        for url in ("http://localhost:8080/x/{campaign}/k", "http://[::1]:8080/k",
                    "http://127.0.0.1/squadstack/webhook/{campaign}/s?token=t"):
            self.control("POST", "config", {"webhook_url": url})
        self.assertEqual(self.control("GET", "config")["webhook_url"],
                         "http://127.0.0.1/squadstack/webhook/{campaign}/***?token=%2A%2A%2A")

    def test_campaign_url_wins(self):
        other = "http://127.0.0.1:%d/other/{campaign}/k2" % self.receiver.port
        self.control("POST", "config", {"webhook_urls": {"camp2": other}})
        self.create(lead("a"))
        self.create(lead("b"), campaign="camp2")
        self.process()
        self.process(campaign="camp2")
        self.wait_idle()
        self.assertEqual(sorted(g["path"] for g in self.receiver.received()),
                         ["/other/camp2/k2", "/squadstack/webhook/camp1/s3cret"])

    def test_no_url_and_bad_requests(self):
        self.create(lead("a"), lead("b"))
        self.assertIn("no such lead", self.process_error({"campaign": "camp1", "lead_ids": ["zz"]}))
        for bad in ({"campaign": "bad campaign"}, {"campaign": "camp1", "outcome": ""},
                    {"campaign": "camp1", "lead_ids": "a"}, {"campaign": "camp1", "extra": 1},
                    {"campaign": "camp1", "processed_at": "later"},
                    {"campaign": "camp1", "lead_responses": []}, []):
            self.process_error(bad)
        self.control("POST", "config", {"webhook_queue_limit": 1})
        self.assertIn("room for 1", self.process_error({"campaign": "camp1"}))
        self.assertEqual(self.control("GET", "outcomes"), {})  # nothing half done
        self.control("POST", "config", {"webhook_url": None})
        self.assertEqual(self.process(), {"processed": ["a", "b"], "queued": 0,
                                          "webhook_url": None})
        self.assertEqual(len(self.control("GET", "outcomes")["camp1"]), 2)
        self.assertEqual(self.webhooks(), {"pending": 0, "scheduled": 0, "attempts": []})

    def test_auto_process(self):
        self.control("POST", "config", {"auto_process": {"delay": 1.0, "outcome": "Auto",
                                                         "lead_responses": {"k": "v"}}})
        self.assertEqual(self.control("GET", "config")["auto_process"],
                         {"delay": 1.0, "outcome": "Auto", "lead_responses": {"k": "v"}})
        self.create(lead("a"), lead("b"))
        self.api("POST", "disable", body=[{"lead_id": "b"}])  # disabled in time: never processed
        status = self.webhooks()
        self.assertEqual((status["scheduled"], self.control("GET", "outcomes")), (2, {}))
        attempts = self.wait_idle()
        self.assertEqual(self.summary(attempts), [("a", 1, 201, None, "delivered")])
        body = json.loads(self.receiver.received()[0]["body"])
        self.assertEqual((body["lead_id"], body["lead_outcome"], body["lead_responses"]),
                         ("a", "Auto", {"k": "v"}))
        self.control("POST", "config", {"auto_process": 0})
        self.assertEqual(self.control("GET", "config")["auto_process"]["delay"], 0.0)
        for bad in ({"delay": -1}, {"delay": 1, "other": 2}, "soon", {"outcome": 3}):
            code, _, _ = self.http("POST", "/_double/config", {"auto_process": bad}, token=None)
            self.assertEqual(code, 400, bad)

    def test_reset_forgets_pending(self):
        self.control("POST", "config", {"webhook_retry_base": 5, "webhook_retry_max": 5})
        self.receiver.answers(503)
        self.create(lead("a"))
        self.process()
        deadline = time.monotonic() + 10
        while not self.webhooks()["attempts"]:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        self.assertEqual(self.webhooks()["pending"], 1)  # waiting for its retry
        self.control("POST", "reset")
        self.assertEqual(self.webhooks(), {"pending": 0, "scheduled": 0, "attempts": []})
        time.sleep(0.2)
        self.assertEqual(len(self.receiver.received()), 1)

    def test_since_and_cli(self):
        env = dict(os.environ, SQUADSTACK_DOUBLE_PORT=str(self.port))

        def ctl(*args):
            return subprocess.run([sys.executable, CTL] + list(args), env=env,
                                  capture_output=True, text=True, timeout=20)

        self.create(lead("a"), lead("b"))
        done = ctl("process", '{"campaign": "camp1", "lead_ids": ["a"]}')
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, "", ""))
        self.assertEqual(ctl("wait-webhooks", "--timeout", "10").returncode, 0)
        self.process(lead_ids=["b"])
        self.wait_idle()
        lines = ctl("webhooks", "--since", "1").stdout.splitlines()
        self.assertEqual([(r["seq"], r["lead_id"]) for r in map(json.loads, lines)], [(2, "b")])
        self.assertNotEqual(ctl("process", '{"campaign": "camp1", "lead_ids": ["zz"]}').returncode, 0)
        self.control("POST", "config", {"webhook_retry_base": 5, "webhook_retry_max": 5})
        self.receiver.answers(503)
        self.process(lead_ids=["a"])
        waited = ctl("wait-webhooks", "--timeout", "0.3")
        self.assertEqual(waited.returncode, 1)
        self.assertIn("1 webhook(s) pending", waited.stderr)


class LifecycleTest(unittest.TestCase):

    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.workdir = tmp.name

    def start(self, *args):
        proc, _, _ = start_double(self.workdir, *args)
        self.addCleanup(stop_process, proc)
        return proc

    def test_sigterm(self):
        proc = self.start()
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=5), 0)

    def test_sigint(self):
        proc = self.start()
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(timeout=5), 0)

    def test_max_lifetime(self):
        proc = self.start("--max-lifetime", "0.3")
        self.assertEqual(proc.wait(timeout=5), 0)

    def test_max_body_option(self):
        proc, port, _ = start_double(self.workdir, "--max-body", "100")
        self.addCleanup(stop_process, proc)
        with OPENER.open("http://127.0.0.1:%d/_double/config" % port, timeout=5) as response:
            self.assertEqual(json.loads(response.read())["max_body"], 100)
        done = subprocess.run([sys.executable, DOUBLE, "--max-body", str(16 * 1024 * 1024 + 1)],
                              capture_output=True, text=True, timeout=20)
        self.assertEqual(done.returncode, 2)
        self.assertIn("--max-body", done.stderr)

    def test_webhook_options(self):
        receiver = Receiver()
        self.addCleanup(receiver.close)
        proc, port, _ = start_double(
            self.workdir, "--token", TOKEN, "--auto-process", "0", "--auto-outcome", "Auto",
            "--webhook-url", "http://127.0.0.1:%d/hook/{campaign}/sec" % receiver.port,
            "--webhook-attempts", "2", "--webhook-retry-base", "0.01", "--webhook-timeout", "3",
            "--webhook-queue-limit", "10")
        self.addCleanup(stop_process, proc)
        with OPENER.open("http://127.0.0.1:%d/_double/config" % port, timeout=5) as response:
            config = json.loads(response.read())
        self.assertEqual((config["webhook_url"], config["webhook_attempts"],
                          config["webhook_retry_base"], config["webhook_timeout"],
                          config["webhook_queue_limit"], config["auto_process"]["outcome"]),
                         ("http://127.0.0.1:%d/hook/{campaign}/***" % receiver.port, 2, 0.01,
                          3.0, 10, "Auto"))
        request = urllib.request.Request(
            "http://127.0.0.1:%d/api/v4/leads/create/c9/" % port, method="POST",
            data=json.dumps([lead("a")]).encode(),
            headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"})
        with OPENER.open(request, timeout=5) as response:
            self.assertEqual(response.status, 201)
        deadline = time.monotonic() + 10
        while not receiver.received():
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        got = receiver.received()[0]
        self.assertEqual((got["path"], json.loads(got["body"])["lead_outcome"]), ("/hook/c9/sec", "Auto"))

    def test_webhook_option_refuses_other_hosts(self):
        for args in (["--webhook-url", "http://10.1.2.3:8080/hook"],
                     ["--webhook-url", "https://127.0.0.1/hook"],
                     ["--campaign-webhook-url", "c1=http://example.com/hook"],
                     ["--campaign-webhook-url", "http://127.0.0.1/hook"],
                     ["--webhook-attempts", "21"]):
            done = subprocess.run([sys.executable, DOUBLE, "--max-lifetime", "5"] + args,
                                  capture_output=True, text=True, timeout=20)
            self.assertEqual(done.returncode, 2, args)
            self.assertTrue(done.stderr, args)

    def test_sigterm_with_webhook_in_flight(self):
        # a receiver that takes the connection and never answers
        silent = socket.socket()
        self.addCleanup(silent.close)
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        proc, port, _ = start_double(
            self.workdir, "--token", TOKEN, "--webhook-timeout", "60",
            "--webhook-url", "http://127.0.0.1:%d/hook/{campaign}/s" % silent.getsockname()[1])
        self.addCleanup(stop_process, proc)
        base = "http://127.0.0.1:%d" % port
        for path, body, headers in (
                ("/api/v4/leads/create/c1/", [lead("a")],
                 {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}),
                ("/_double/process", {"campaign": "c1"}, {})):
            request = urllib.request.Request(base + path, method="POST",
                                             data=json.dumps(body).encode(), headers=headers)
            OPENER.open(request, timeout=5).close()
        with OPENER.open(base + "/_double/webhooks", timeout=5) as response:
            self.assertEqual(json.loads(response.read())["pending"], 1)
        time.sleep(0.2)  # the attempt is in flight now, waiting for an answer
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=10), 0)
        self.assertLess(time.monotonic() - started, 3)

    def test_parent_gone(self):
        parent = subprocess.Popen(["sleep", "30"])
        self.addCleanup(stop_process, parent)
        proc = self.start("--parent-pid", str(parent.pid))
        time.sleep(0.2)
        self.assertIsNone(proc.poll())
        parent.kill()
        parent.wait()
        self.assertEqual(proc.wait(timeout=5), 0)


if __name__ == "__main__":
    unittest.main()
