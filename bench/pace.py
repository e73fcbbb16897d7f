#!/usr/bin/env python3
"""bench/pace.py: steady arrivals of leads for bench/saturation.

    pace.py --psql CMD --rate LEADS_PER_S --seconds S --campaign C
            [--via mixed|trigger|sql] --samples FILE [--sample-every S] [--tail S]

Arrival i is committed at start + i / rate, one lead per transaction, by two
psql sessions: one inserting CRM rows through squadstack_sync_trigger() (the
script has set the trigger up for the campaign) and one calling
squadstack_create_leads(); "mixed" alternates them.  Lead ids come from the
sequence crm.lead_no.  A third session samples, every --sample-every
seconds until --tail seconds after the last arrival, the time, the
sequence's last value and the campaign's backlog (its operations in the
intake and those queued or being sent in the outbox) into FILE as
"epoch last_value backlog" lines.  Prints the start time (epoch seconds).
CMD is the psql command line, split on spaces.
"""

import argparse
import subprocess
import sys
import time

PHONE = "(9000000000 + (random() * 999999999)::bigint)::text"
# crm.customers' id defaults to 'S' || nextval('crm.lead_no'): see bench/saturation
TRIGGER_SQL = ("INSERT INTO crm.customers (mobile, full_name, city) "
               "VALUES (%s, 'Customer', 'Pune');\n" % PHONE)


def function_sql(campaign):
    return ("SELECT FROM squadstack_create_leads('%s', jsonb_build_object("
            "'lead_id', 'S' || nextval('crm.lead_no'), "
            "'phone_number', %s, "
            "'contact_name', 'Customer', 'city', 'Pune'));\n" % (campaign, PHONE))


def sample_sql(campaign):
    return ("SELECT extract(epoch FROM clock_timestamp()), "
            "(SELECT last_value FROM crm.lead_no), "
            "(SELECT count(*) FROM squadstack.intake WHERE campaign_id = '%s') + "
            "(SELECT count(*) FROM squadstack.outbox WHERE campaign_id = '%s' "
            " AND state IN ('queued', 'sending'));\n" % (campaign, campaign))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--psql", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--campaign", required=True)
    parser.add_argument("--via", choices=("mixed", "trigger", "sql"), default="mixed")
    parser.add_argument("--samples", required=True)
    parser.add_argument("--sample-every", type=float, default=0.25)
    parser.add_argument("--tail", type=float, default=0.0)
    args = parser.parse_args()

    cmd = args.psql.split()
    out = open(args.samples, "w", encoding="ascii")
    sampler = subprocess.Popen(cmd + ["-At", "-F", " "], stdin=subprocess.PIPE,
                               stdout=out, text=True)
    writers = []
    if args.via in ("mixed", "trigger"):
        writers.append((subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         text=True), TRIGGER_SQL))
    if args.via in ("mixed", "sql"):
        writers.append((subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         text=True), function_sql(args.campaign)))
    sample = sample_sql(args.campaign)
    total = int(args.rate * args.seconds)
    start = time.time() + 0.2
    end = start + args.seconds + args.tail
    next_sample = start
    i = 0
    try:
        while True:
            now = time.time()
            if now >= end and i >= total:
                break
            if now >= next_sample:
                sampler.stdin.write(sample)
                sampler.stdin.flush()
                next_sample += args.sample_every
            due = start + i / args.rate if i < total else end
            if i < total and now >= due:
                proc, text = writers[i % len(writers)]
                proc.stdin.write(text)
                proc.stdin.flush()
                i += 1
                continue
            time.sleep(max(0.0, min(due, next_sample, end) - time.time()))
    finally:
        for proc, _ in writers:
            proc.stdin.close()
        sampler.stdin.close()
        failed = False
        for proc in [p for p, _ in writers] + [sampler]:
            try:
                failed |= proc.wait(timeout=60) != 0
            except subprocess.TimeoutExpired:
                proc.kill()
                failed = True
        out.close()
    print("%.3f" % start)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
