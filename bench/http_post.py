#!/usr/bin/env python3
"""Posts "lead processed" webhooks to squadstack-webhookd as fast as it
answers, from CLIENTS threads with keep-alive connections, for SECONDS, and
prints the answered requests per second and the statuses seen.

    bench/http_post.py PORT SECONDS CLIENTS LEADS [CAMPAIGN]

Only 127.0.0.1 is ever contacted.
"""
import http.client
import json
import random
import sys
import threading
import time

port, seconds, clients, leads = (int(a) for a in sys.argv[1:5])
campaign = sys.argv[5] if len(sys.argv) > 5 else "camp_bench"
path = "/squadstack/webhook/%s/bench-secret" % campaign
deadline = time.monotonic() + seconds
lock = threading.Lock()
statuses = {}
done = [0]


def worker(seed):
    rnd = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = 0
    local = {}
    while time.monotonic() < deadline:
        lead = "L%d" % rnd.randint(1, leads)
        body = json.dumps({
            "campaign_id": campaign, "lead_id": lead,
            "processed_at": time.time() + rnd.random() / 1000,
            "lead_outcome": "Connected : Objective Met",
            "phone_number": "+919876543210", "contact_name": "Bench Lead",
            "latest_called_at": "2024-01-01T10:00:00+05:30",
            "latest_recording_url": "https://recordings.example/x.mp3",
            "lead_responses": {"interest": rnd.choice(["high", "low"]), "q2": "no"}})
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            local[resp.status] = local.get(resp.status, 0) + 1
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            local["error"] = local.get("error", 0) + 1
        n += 1
    with lock:
        done[0] += n
        for k, v in local.items():
            statuses[k] = statuses.get(k, 0) + v


start = time.monotonic()
threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
ok = statuses.get(201, 0)
print("%.1f %s" % (ok / elapsed, json.dumps(statuses, sort_keys=True, default=str)))
