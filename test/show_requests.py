"""Prints the API double's recorded requests, one short line each."""
import json
import sys

for line in sys.stdin:
    r = json.loads(line)
    print(f"{r['seq']:>3}  {r['method']:<5} {r['path']:<34} {r['status'] or 'dropped'}  "
          f"leads={','.join(r['lead_ids'])}  auth={'Bearer ***' if r['authorization'] else None}")
