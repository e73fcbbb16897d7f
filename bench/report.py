#!/usr/bin/env python3
"""bench/report.py: the arithmetic of bench/trigger and bench/saturation.

    report.py run-line WORK PHASE ROUND VARIANT HZ   one run's worker figures
    report.py trigger WORK HZ                        bench/trigger's results
    report.py saturation WORK                        bench/saturation's results

WORK is the script's scratch directory: requests.jsonl (the API double's
request log) and the files the script wrote there.
"""

import json
import os
import re
import statistics
import sys

PROGRESS_RE = re.compile(r"^progress: ([0-9.]+) s, ([0-9.]+) tps")
# a call's work in the worker: claiming before it is received, recording
# after its answer; stretches this close to a call do not count as waiting
BEFORE_CALL = 1.0
AFTER_ANSWER = 0.5


def read_requests(work):
    records = []
    path = os.path.join(work, "requests.jsonl")
    if not os.path.exists(path):
        return records
    with open(path, encoding="utf-8") as log:
        for line in log:
            line = line.strip()
            if not line.endswith("}"):
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def read_runs(work):
    """The lines bench/trigger appended to WORK/runs."""
    runs = []
    with open(os.path.join(work, "runs"), encoding="ascii") as f:
        for line in f:
            p = line.split()
            runs.append({
                "phase": p[0], "round": int(p[1]), "variant": p[2],
                "t0": float(p[3]), "t1": float(p[4]), "tps": float(p[5]), "n": int(p[6]),
                "us": float(p[7]), "wticks": int(p[8]), "dticks": int(p[9]),
                "c0": int(p[10]), "c1": int(p[11]),
            })
    return runs


def find_run(runs, phase, rnd, variant):
    for r in runs:
        if r["phase"] == phase and r["round"] == rnd and r["variant"] == variant:
            return r
    raise SystemExit("report.py: no run %s %s %s" % (phase, rnd, variant))


def cumulative_commits(work, run):
    """Points (time, commits so far) of one run, from pgbench's progress
    reports (each covers the second before its time stamp)."""
    points = []
    path = os.path.join(work, "progress.%s.%d.%s" % (run["phase"], run["round"], run["variant"]))
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f:
            m = PROGRESS_RE.match(line)
            if not m:
                continue
            t, tps = float(m.group(1)), float(m.group(2))
            if not points:
                points = [(t - 1.0, 0.0)]
            if t > points[-1][0]:
                points.append((t, points[-1][1] + tps * (t - points[-1][0])))
    if not points:
        points = [(run["t0"], 0.0)]
    # the rest of the transactions, up to the end of the run
    end = max(run["t1"], points[-1][0] + 1e-3)
    points.append((end, max(float(run["n"]), points[-1][1])))
    return points


def interpolate(points, t):
    if t <= points[0][0]:
        return points[0][1]
    for (ta, va), (tb, vb) in zip(points, points[1:]):
        if t <= tb:
            return va + (vb - va) * (t - ta) / (tb - ta)
    return points[-1][1]


def read_samples(path):
    samples = []
    with open(path, encoding="ascii") as f:
        for line in f:
            p = line.split()
            if len(p) == 2:
                samples.append((float(p[0]), int(p[1])))
    return samples


def waiting_cpu(work, run, requests, hz):
    """Worker CPU seconds, commits and seconds over the stretches of a run
    in which the worker made no call, nor prepared or recorded one."""
    samples = read_samples(os.path.join(
        work, "samples.%s.%d.%s" % (run["phase"], run["round"], run["variant"])))
    commits = cumulative_commits(work, run)
    busy = [(r["received_at"] - BEFORE_CALL, r.get("answered_at", r["received_at"]) + AFTER_ANSWER)
            for r in requests
            if r["received_at"] <= run["t1"] + 1 and r.get("answered_at", 0) + 1 >= run["t0"]]
    cpu = n = secs = 0.0
    for (ta, ka), (tb, kb) in zip(samples, samples[1:]):
        if ta < run["t0"] or tb > run["t1"]:
            continue
        if any(b0 <= tb and b1 >= ta for b0, b1 in busy):
            continue
        cpu += (kb - ka) / hz
        n += interpolate(commits, tb) - interpolate(commits, ta)
        secs += tb - ta
    return cpu, n, secs


def median(values):
    return statistics.median(values) if values else float("nan")


def run_line(work, phase, rnd, variant, hz):
    runs = read_runs(work)
    run = find_run(runs, phase, int(rnd), variant)
    hz = float(hz)
    everything = read_requests(work)
    requests = everything[run["c0"]:run["c1"]]
    text = "worker %.4f s CPU per 1,000 commits, %d calls" % (
        run["wticks"] / hz / run["n"] * 1000, run["c1"] - run["c0"])
    if phase == "limited" and variant == "sync":
        cpu, n, secs = waiting_cpu(work, run, everything, hz)
        if n > 0:
            text += " (%.4f s over the %.0f s far from calls)" % (cpu / n * 1000, secs)
    if phase == "lifted":
        leads = sum(len(r.get("lead_ids") or []) for r in requests)
        text += " (%.1f leads each), double %.4f s CPU per 1,000 commits" % (
            leads / max(1, len(requests)), run["dticks"] / hz / run["n"] * 1000)
    print(text)


def trigger(work, hz):
    hz = float(hz)
    runs = read_runs(work)
    requests = read_requests(work)
    for phase, title in (("limited", "under the limit (100 calls per 60 s), the worker waiting for a slot"),
                         ("lifted", "with the limit lifted")):
        mine = [r for r in runs if r["phase"] == phase]
        if not mine:
            continue
        variants = []
        for r in mine:
            if r["variant"] not in variants:
                variants.append(r["variant"])
        tps = {v: median([r["tps"] for r in mine if r["variant"] == v]) for v in variants}
        us = {v: median([r["us"] for r in mine if r["variant"] == v]) for v in variants}
        # the writers' own cost: the worker's calls land in any set-up's runs
        usw = {v: median([r["us"] - r["wticks"] * 1e6 / hz / r["n"]
                          for r in mine if r["variant"] == v]) for v in variants}
        rounds = max(r["round"] for r in mine)
        print("%s: medians of %d rounds" % (title, rounds))
        print("  throughput       " + "  ".join("%s %9.1f" % (v, tps[v]) for v in variants) + " tps")
        print("  CPU/transaction  " + "  ".join("%s %9.1f" % (v, us[v]) for v in variants)
              + " us (the whole cluster, the worker included)")
        print("  CPU/transaction  " + "  ".join("%s %9.1f" % (v, usw[v]) for v in variants)
              + " us (the cluster without the worker)")
        if "sync" in tps and "bare" in tps:
            goal = "  (goal >= 0.90)" if phase == "limited" else "  (no goal)"
            print("  sync/bare     %.3f by throughput; by CPU per transaction %.3f,"
                  " %.3f without the worker%s"
                  % (tps["sync"] / tps["bare"], us["bare"] / us["sync"],
                     usw["bare"] / usw["sync"], goal))
        if "sync" in tps and "plpgsql" in tps:
            goal = "  (goal >= 1.0)" if phase == "limited" else "  (no goal)"
            print("  sync/plpgsql  %.3f by throughput; by CPU per transaction %.3f,"
                  " %.3f without the worker%s"
                  % (tps["sync"] / tps["plpgsql"], us["plpgsql"] / us["sync"],
                     usw["plpgsql"] / usw["sync"], goal))
        sync = [r for r in mine if r["variant"] == "sync"]
        if not sync:
            continue
        calls = sum(r["c1"] - r["c0"] for r in sync)
        commits = sum(r["n"] for r in sync)
        cpu_all = sum(r["wticks"] for r in sync) / hz
        if phase == "limited":
            cpu = n = secs = 0.0
            for r in sync:
                c, k, s = waiting_cpu(work, r, requests, hz)
                cpu += c
                n += k
                secs += s
            if n > 0:
                print("  worker CPU per 1,000 commits while waiting for a slot: %.4f s"
                      " (%.2f s of CPU over %.0f s and %.0f commits of the sync runs"
                      " farther than %g s from a call)  (goal < 0.05 s)"
                      % (cpu / n * 1000, cpu, secs, n, BEFORE_CALL))
            else:
                print("  worker CPU while waiting for a slot: no stretch without calls to measure")
            print("  worker CPU per 1,000 commits over the whole sync runs: %.4f s"
                  " (%.2f s for %d commits; %d calls made meanwhile)"
                  % (cpu_all / commits * 1000, cpu_all, commits, calls))
            others = [r for r in mine if r["variant"] != "sync"]
            if others:
                print("  worker CPU during the other runs: %.2f s for %d commits (%d calls made meanwhile)"
                      % (sum(r["wticks"] for r in others) / hz, sum(r["n"] for r in others),
                         sum(r["c1"] - r["c0"] for r in others)))
        else:
            leads = sum(len(q.get("lead_ids") or [])
                        for r in sync for q in requests[r["c0"]:r["c1"]])
            dcpu = sum(r["dticks"] for r in sync) / hz
            print("  API double CPU per 1,000 commits: %.4f s (%.2f s for %d commits); "
                  "worker: %.4f s; %d calls during the sync runs, %.1f leads each"
                  % (dcpu / commits * 1000, dcpu, commits, cpu_all / commits * 1000,
                     calls, leads / max(1, calls)))
        print()
    n429 = sum(1 for r in requests if r.get("status") == 429)
    print("429s seen by the double: %d" % n429)


def main(argv):
    if len(argv) >= 2 and argv[1] == "run-line" and len(argv) == 7:
        run_line(*argv[2:])
    elif len(argv) == 4 and argv[1] == "trigger":
        trigger(argv[2], argv[3])
    elif len(argv) >= 3 and argv[1] == "saturation":
        saturation(*argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


def saturation(work, limit, window, batch, windows, warmup):
    limit, window, batch = int(limit), float(window), int(batch)
    windows, warmup = int(windows), int(warmup)
    requests = read_requests(work)
    phases = []
    with open(os.path.join(work, "phases"), encoding="ascii") as f:
        for line in f:
            load, campaign, start, rate, ticks, hz = line.split()
            phases.append((int(load), campaign, float(start), float(rate),
                           int(ticks) / float(hz)))
    verdicts = []
    for load, campaign, start, rate, cpu in phases:
        samples = []
        with open(os.path.join(work, "samples.%d" % load), encoding="ascii") as f:
            for line in f:
                p = line.split()
                if len(p) == 3:
                    samples.append((float(p[0]), float(p[1]), float(p[2])))
        arrived = [(t, a) for t, a, _ in samples]
        backlog = [(t, b) for t, _, b in samples]
        calls = [r for r in requests
                 if r.get("campaign") == campaign and r.get("endpoint") == "create"]
        print("load %d%%: %.1f leads/s, %.0f per window of %g s (capacity %d)"
              % (load, rate, rate * window, window, limit * batch))
        print("  window  calls  used   leads  fill   arrived  delivered/arrived  backlog  429s")
        rows = []
        for k in range(warmup + windows):
            t0, t1 = start + k * window, start + (k + 1) * window
            mine = [r for r in calls if t0 <= r["received_at"] < t1]
            ok = [r for r in mine if r.get("status") is not None and 200 <= r["status"] < 300]
            n429 = sum(1 for r in mine if r.get("status") == 429)
            used = sum(1 for r in mine if r.get("status") != 429)
            leads = sum(len(r.get("lead_ids") or []) for r in ok)
            fill = leads / (len(ok) * batch) if ok else float("nan")
            arr = interpolate(arrived, t1) - interpolate(arrived, t0)
            ratio = leads / arr if arr > 0 else float("nan")
            left = interpolate(backlog, t1)
            judged = k >= warmup
            rows.append((used, leads, fill, arr, ratio, left, n429, judged))
            print("  %s%-5d %5d  %5.3f %6d  %5.3f %7.0f  %17.3f  %7.0f  %4d"
                  % (" " if judged else "w", k + 1, used, used / limit, leads, fill, arr,
                     ratio, left, n429))
        judged = [r for r in rows if r[7]]
        total_calls = sum(r[0] for r in judged)
        total_leads = sum(r[1] for r in judged)
        total_arr = sum(r[3] for r in judged)
        print("  judged windows: %d calls (%.3f of the budget), %d leads delivered of %.0f arrived"
              " (%.3f), mean fill %.3f, largest backlog %.0f"
              % (total_calls, total_calls / (limit * len(judged)), total_leads, total_arr,
                 total_leads / total_arr if total_arr else float("nan"),
                 total_leads / (total_calls * batch) if total_calls else float("nan"),
                 max(r[5] for r in judged)))
        print("  worker CPU while the leads arrived: %.2f s, %.4f s per 1,000 arrivals"
              % (cpu, cpu / (interpolate(arrived, samples[-1][0]) - interpolate(arrived, start)) * 1000))
        if load == 80:
            worst = min(r[4] for r in judged)
            verdicts.append(("80%%: every window delivers >= 0.95 of its arrivals (worst %.3f)"
                             % worst, worst >= 0.95))
            most = max(r[5] for r in judged)
            bound = rate * window
            verdicts.append(("80%%: the backlog stays bounded, at most one window's arrivals"
                             " (%.0f) at every window's end (largest %.0f)" % (bound, most),
                             most <= bound))
        if load == 120:
            worst = min(r[0] for r in judged) / limit
            verdicts.append(("120%%: every window uses >= 0.97 of its calls (worst %.3f)" % worst,
                             worst >= 0.97))
            fill = min(r[2] for r in judged)
            verdicts.append(("120%%: full batches, mean fill >= 0.99 in every window (worst %.3f)"
                             % fill, fill >= 0.99))
        print()
    n429 = sum(1 for r in requests if r.get("status") == 429)
    verdicts.append(("no 429 anywhere (%d seen)" % n429, n429 == 0))
    print("goals:")
    for text, met in verdicts:
        print("  %-4s %s" % ("met" if met else "MISS", text))
    print("(w: warm-up window, not judged)")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
