#!/usr/bin/env python3
"""Checks that src/README.md's layer table is true of the code.

Every module (a .c file and its header, or a header alone) must be in the
table; a file may include the header of a module in its own layer or
below, never above; and the includes between modules form no circle.
Prints what is wrong and exits 1, or prints one line and exits 0.
"""
import os
import re
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
table = open(os.path.join(root, "README.md"), encoding="utf-8").read()

layer = {}
for row in re.finditer(r"^\| (\d+) [^|]*\| ([^|]*)\|", table, re.M):
    for name in re.findall(r"`([a-z_]+(?:\.h)?)`", row.group(2)):
        layer[name] = int(row.group(1))
# claim.c and record.c implement outbox.h
owner = {"claim": "outbox.h", "record": "outbox.h", "outbox": "outbox.h"}

problems = []
edges = {}
files = [f for f in os.listdir(root) if f.endswith((".c", ".h"))]
def module_of(header_or_file):
    """The module a file or header belongs to: a header listed on its own
    (squadstack.h, version.h, ...) is a module by itself."""
    if header_or_file.endswith(".h") and header_or_file in layer:
        return header_or_file
    name = header_or_file[:-2]
    return owner.get(name) or name


for f in sorted(files):
    module = module_of(f)
    if module not in layer:
        problems.append("%s: module %s is not in src/README.md" % (f, module))
        continue
    text = open(os.path.join(root, f), encoding="utf-8").read()
    for inc in re.findall(r'^#include "([a-z_]+)\.h"', text, re.M):
        if not os.path.exists(os.path.join(root, inc + ".h")):
            continue            # a PostgreSQL header
        target = module_of(inc + ".h")
        if target == module:
            continue
        if target not in layer:
            problems.append("%s includes %s.h, which is not in src/README.md" % (f, inc))
            continue
        if layer[target] > layer[module]:
            problems.append("%s (layer %d) includes %s.h (layer %d): a call up"
                            % (f, layer[module], inc, layer[target]))
        edges.setdefault(module, set()).add(target)

# circles
state = {}


def visit(node, path):
    state[node] = 1
    for nxt in sorted(edges.get(node, ())):
        if state.get(nxt) == 1:
            problems.append("circle: " + " -> ".join(path[path.index(nxt):] + [nxt])
                            if nxt in path else "circle through " + nxt)
        elif not state.get(nxt):
            visit(nxt, path + [nxt])
    state[node] = 2


for node in sorted(edges):
    if not state.get(node):
        visit(node, [node])

if problems:
    for p in problems:
        print("layers: " + p)
    sys.exit(1)
print("layers: %d modules, %d dependencies, no call up a layer, no circle"
      % (len(layer), sum(len(v) for v in edges.values())))
