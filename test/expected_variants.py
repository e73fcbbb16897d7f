#!/usr/bin/env python3
"""The alternative expected files, made from the main ones.

    python3 test/expected_variants.py          check (exit 1 if one is stale)
    python3 test/expected_variants.py --write  write them again

PostgreSQL 16 reworded the error for reading a superuser-only setting;
expected/privileges_1.out is expected/privileges.out with that wording.
pg_regress accepts either file, so a privileges_1.out left behind after a
change to the test would fail only on 16 and later: this check fails on
any version.
"""

import re
import sys

REWORDINGS = {
    "expected/privileges.out": (
        "expected/privileges_1.out",
        re.compile(r'^ERROR:  must be superuser or have privileges of '
                   r'pg_read_all_settings to examine "([^"]+)"\n', re.M),
        'ERROR:  permission denied to examine "\\1"\n'
        'DETAIL:  Only roles with privileges of the "pg_read_all_settings" '
        'role may examine this parameter.\n',
    ),
}


def main():
    write = sys.argv[1:] == ["--write"]
    stale = 0
    for source, (variant, pattern, replacement) in REWORDINGS.items():
        with open(source) as f:
            want = pattern.sub(replacement, f.read())
        try:
            with open(variant) as f:
                have = f.read()
        except OSError:
            have = None
        if have == want:
            continue
        if write:
            with open(variant, "w") as f:
                f.write(want)
            print(f"wrote {variant}")
        else:
            print(f"{variant} is stale: run python3 test/expected_variants.py --write")
            stale += 1
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
