#!/usr/bin/env python3
"""Checks a distribution's META.json against the PGXN Meta Spec 1.0.

    python3 test/meta_check.py DIR

DIR is an unpacked release tarball (make dist).  The rules are those of the
spec (https://pgxn.org/spec/): the mandatory keys, the form of names, semantic
versions, licenses, prerequisites and tags, and no unknown keys but custom
x_ ones.  Beyond the spec: every file META.json names is in DIR, and every
version in it is default_version of the control file.
Prints what is wrong and exits 1, or prints "META.json is OK".
"""

import json
import os
import re
import sys

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")
TERM = re.compile(r"^[^/\\\s\x00-\x1f\x7f]{2,}$")
TAG = re.compile(r"^[^/\\\x00-\x1f\x7f]{2,255}$")
RANGE_PART = re.compile(r"^\s*(?:(?:==|!=|>=|<=|>|<)\s*)?(\S+)\s*$")
LICENSES = {
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd",
    "freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1",
    "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5",
    "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source",
    "restricted", "unrestricted", "unknown",
}
MANDATORY = ["name", "version", "abstract", "maintainer", "license",
             "provides", "meta-spec"]
OPTIONAL = ["description", "generated_by", "tags", "no_index", "prereqs",
            "release_status", "resources"]
PHASES = {"configure", "build", "test", "runtime", "develop"}
RELATIONS = {"requires", "recommends", "suggests", "conflicts"}


class Checker:
    def __init__(self, root):
        self.root = root
        self.errors = []

    def error(self, where, what):
        self.errors.append(f"{where}: {what}")

    def custom(self, key):
        return key[:2] in ("x_", "X_") and len(key) > 2

    def only(self, where, obj, allowed):
        for key in obj:
            if key not in allowed and not self.custom(key):
                self.error(where, f"unknown key {key!r}")

    def string(self, where, value, minimum=1):
        if not isinstance(value, str) or len(value) < minimum:
            self.error(where, "must be a non-empty string")
            return False
        return True

    def version(self, where, value):
        if not isinstance(value, str) or not SEMVER.match(value):
            self.error(where, f"{value!r} is not a semantic version")

    def term(self, where, value):
        if not isinstance(value, str) or not TERM.match(value):
            self.error(where, f"{value!r} is not a term (two or more "
                              "characters, no slash, backslash or space)")

    def path(self, where, value):
        if not self.string(where, value):
            return
        if value.startswith("/") or "\\" in value or ".." in value.split("/"):
            self.error(where, f"{value!r} is not a relative unix path")
        elif not os.path.isfile(os.path.join(self.root, value)):
            self.error(where, f"{value!r} is not in the distribution")

    def version_range(self, where, value):
        if value == 0 or value == "0":
            return
        if not isinstance(value, str):
            self.error(where, f"{value!r} is not a version range")
            return
        for part in value.split(","):
            m = RANGE_PART.match(part)
            if not m or not SEMVER.match(m.group(1)):
                self.error(where, f"{value!r} is not a version range")
                return

    def license(self, value):
        if isinstance(value, str):
            if value not in LICENSES:
                self.error("license", f"{value!r} is not a known license")
        elif isinstance(value, list):
            if not value or len(set(map(str, value))) != len(value):
                self.error("license", "must be a non-empty list without repeats")
            for v in value:
                if v not in LICENSES:
                    self.error("license", f"{v!r} is not a known license")
        elif isinstance(value, dict):
            if not value:
                self.error("license", "must name at least one license")
            for name, uri in value.items():
                if not isinstance(uri, str) or not re.match(r"^[a-z][a-z0-9+.-]*:", uri):
                    self.error(f"license.{name}", "must be a URI")
        else:
            self.error("license", "must be a string, a list or an object")

    def maintainer(self, value):
        values = value if isinstance(value, list) else [value]
        if not values:
            self.error("maintainer", "must name someone")
        for v in values:
            self.string("maintainer", v)

    def provides(self, value, version):
        if not isinstance(value, dict) or not value:
            self.error("provides", "must be an object naming at least one extension")
            return
        for name, ext in value.items():
            where = f"provides.{name}"
            self.term(where, name)
            if not isinstance(ext, dict):
                self.error(where, "must be an object")
                continue
            self.only(where, ext, {"file", "version", "abstract", "docfile", "docpath"})
            for key in ("file", "version"):
                if key not in ext:
                    self.error(where, f"{key!r} is mandatory")
            if "file" in ext:
                self.path(f"{where}.file", ext["file"])
            if "docfile" in ext:
                self.path(f"{where}.docfile", ext["docfile"])
            if "abstract" in ext:
                self.string(f"{where}.abstract", ext["abstract"])
            if "version" in ext:
                self.version(f"{where}.version", ext["version"])
                if version and ext["version"] != version:
                    self.error(f"{where}.version",
                               f"{ext['version']!r} is not the control file's {version!r}")

    def prereqs(self, value):
        if not isinstance(value, dict):
            self.error("prereqs", "must be an object")
            return
        for phase, relations in value.items():
            where = f"prereqs.{phase}"
            if phase not in PHASES and not self.custom(phase):
                self.error(where, "unknown phase")
                continue
            if not isinstance(relations, dict) or not relations:
                self.error(where, "must be a non-empty object")
                continue
            for relation, exts in relations.items():
                w = f"{where}.{relation}"
                if relation not in RELATIONS and not self.custom(relation):
                    self.error(w, "unknown relationship")
                    continue
                if not isinstance(exts, dict):
                    self.error(w, "must be an object")
                    continue
                for ext, rng in exts.items():
                    self.term(f"{w}.{ext}", ext)
                    self.version_range(f"{w}.{ext}", rng)

    def check(self, meta, control_version):
        if not isinstance(meta, dict):
            self.error("META.json", "must be an object")
            return
        self.only("META.json", meta, set(MANDATORY) | set(OPTIONAL))
        for key in MANDATORY:
            if key not in meta:
                self.error(key, "is mandatory")
        if "name" in meta:
            self.term("name", meta["name"])
        if "version" in meta:
            self.version("version", meta["version"])
            if control_version and meta["version"] != control_version:
                self.error("version", f"{meta['version']!r} is not the control "
                                      f"file's {control_version!r}")
        if "abstract" in meta:
            self.string("abstract", meta["abstract"])
        if "description" in meta:
            self.string("description", meta["description"])
        if "generated_by" in meta:
            self.string("generated_by", meta["generated_by"])
        if "maintainer" in meta:
            self.maintainer(meta["maintainer"])
        if "license" in meta:
            self.license(meta["license"])
        if "provides" in meta:
            self.provides(meta["provides"], control_version)
        if "prereqs" in meta:
            self.prereqs(meta["prereqs"])
        if "release_status" in meta and meta["release_status"] not in (
                "stable", "testing", "unstable"):
            self.error("release_status", "must be stable, testing or unstable")
        if "tags" in meta:
            tags = meta["tags"]
            if not isinstance(tags, list) or not tags or len(set(map(str, tags))) != len(tags):
                self.error("tags", "must be a non-empty list without repeats")
            else:
                for t in tags:
                    if not isinstance(t, str) or not TAG.match(t):
                        self.error("tags", f"{t!r} is not a tag")
        spec = meta.get("meta-spec")
        if spec is not None:
            if not isinstance(spec, dict):
                self.error("meta-spec", "must be an object")
            else:
                self.only("meta-spec", spec, {"version", "url"})
                if not re.match(r"^1\.0\.\d+$", str(spec.get("version", ""))):
                    self.error("meta-spec.version", "must be 1.0.x")
                if "url" in spec and spec["url"] not in (
                        "https://pgxn.org/meta/spec.txt", "http://pgxn.org/meta/spec.txt"):
                    self.error("meta-spec.url", "must be the spec's address")


def control_version(root, name):
    try:
        with open(os.path.join(root, f"{name}.control")) as f:
            for line in f:
                m = re.match(r"^default_version\s*=\s*'([^']*)'", line)
                if m:
                    return m.group(1)
    except OSError:
        pass
    return None


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    root = sys.argv[1]
    try:
        with open(os.path.join(root, "META.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        print(f"META.json cannot be read: {e}")
        return 1
    name = meta.get("name") if isinstance(meta, dict) else None
    checker = Checker(root)
    version = control_version(root, name) if isinstance(name, str) else None
    if version is None:
        checker.error("META.json", f"no default_version in {name}.control")
    checker.check(meta, version)
    if checker.errors:
        print("META.json is invalid:")
        for e in checker.errors:
            print(f"  {e}")
        return 1
    print("META.json is OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
