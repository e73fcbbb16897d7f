#!/usr/bin/env python3
"""A fake SquadStack API v4 server (the "API double") for the extension's tests.

It answers the lead endpoints of the v4 API closely enough for the extension to be
exercised end to end, records every request it receives, and can be told through a
small control API under /_double/ to misbehave (errors, delays, dropped connections,
non-JSON answers, maintenance).  Python standard library only.

    python3 test/api_double.py --port 0 --port-file PORTFILE --token TOKEN

See --help for every option; the control API is described in handle_control().
"""

import argparse
import copy
import json
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

HOST = "127.0.0.1"
CONTROL_PREFIX = "/_double"

# Endpoint name -> the one HTTP method it accepts.
ENDPOINT_METHODS = {
    "create": "POST",
    "disable": "POST",
    "delete": "POST",
    "update": "PATCH",
    "convert": "POST",
    "responses": "GET",
}
CAMPAIGN_PATTERN = r"[A-Za-z0-9_-]{1,64}"
ROUTE_RE = re.compile(
    r"/api/v4/leads/(" + "|".join(ENDPOINT_METHODS) + r")/(" + CAMPAIGN_PATTERN + r")/?")
CAMPAIGN_RE = re.compile(CAMPAIGN_PATTERN)
# 10 digits not starting with 0 (mobiles 6-9, landlines 1-5), optionally after +91 or 91.
PHONE_RE = re.compile(r"(?:\+91|91)?[1-9][0-9]{9}")

# The most a request body may have, whatever max_body says: larger ones are
# answered 413 without being read.
MAX_BODY = 16 * 1024 * 1024
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
FIXED_LEAD_KEYS = {"lead_id", "phone_number", "contact_name"}
FAULT_KINDS = {"status", "delay", "drop", "nonjson", "maintenance"}
FAULT_KEYS = {"kind", "status", "retry_after", "body", "content_type", "seconds",
              "after_effect", "count", "endpoint", "campaign", "method"}

NOT_FOUND = {"detail": "Not found."}
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
NO_PERMISSION = {"detail": "You do not have permission to perform this action."}
THROTTLED = {"detail": "Request was throttled."}
MAINTENANCE = {"detail": "Service temporarily unavailable, try again later."}
INVALID_PAGE = {"detail": "Invalid page."}
TOO_LARGE = {"detail": "Request body too large."}


# ---------------------------------------------------------------------------
# Small value helpers
# ---------------------------------------------------------------------------

def _reject_constant(name):
    # json.loads accepts NaN and Infinity, which are not JSON; a real server refuses them.
    raise ValueError("not JSON: " + name)


def parse_json(raw):
    """Parse request bytes as JSON; raises ValueError (also for bad UTF-8)."""
    return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)


def try_parse_json(raw):
    """The parsed body for the record, or None when it is empty or not JSON."""
    if not raw:
        return None
    try:
        return parse_json(raw)
    except ValueError:
        return None


def is_int(value):
    # bool is a subclass of int in Python, but true/false are not integers in JSON.
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def valid_lead_id(value):
    return is_int(value) or (isinstance(value, str) and 1 <= len(value) <= 255)


def lead_key(value):
    # Leads are identified by the string form of lead_id: 1 and "1" are the same lead.
    return str(value)


def reported_lead_id(value):
    """The lead_id to echo in an error body: as sent when it is a string or integer."""
    return value if isinstance(value, str) or is_int(value) else None


def is_scalar(value):
    return value is None or isinstance(value, (str, int, float, bool))


def parse_timestamp(value):
    """Epoch seconds from an epoch number (or numeric string) or an ISO-8601 string.

    Returns None when the value is neither.  A timestamp without an offset is taken
    as UTC, which is what the webhook examples use.
    """
    if isinstance(value, bool):
        return None
    if is_int(value) or isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    try:
        number = float(value)
        return number if math.isfinite(number) else None
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def extract_lead_ids(body):
    """lead_id values (as strings) of a single object or of the objects of an array."""
    items = body if isinstance(body, list) else [body]
    return [lead_key(item["lead_id"]) for item in items
            if isinstance(item, dict)
            and (isinstance(item.get("lead_id"), str) or is_int(item.get("lead_id")))]


# ---------------------------------------------------------------------------
# Answers and errors
# ---------------------------------------------------------------------------

@dataclass
class Answer:
    """What the handler sends back (or, with drop, the decision not to)."""
    status: int = 200
    payload: bytes = b""
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    drop: bool = False
    close: bool = False
    fault: str = None


def json_answer(status, obj, headers=None):
    return Answer(status=status, payload=json.dumps(obj).encode("utf-8"),
                  headers=dict(headers or {}))


class ApiError(Exception):
    """Raised by validation code; carries the HTTP status and JSON body to answer."""

    def __init__(self, status, body):
        super().__init__(status, body)
        self.status = status
        self.body = body


def bad_request(reason, lead_id=None):
    return ApiError(400, {"error": reason, "lead_id": lead_id})


def not_found():
    return ApiError(404, dict(NOT_FOUND))


class BodyError(Exception):
    """The request body could not be read (bad framing or too large)."""

    def __init__(self, status, reason, size=0):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.size = size  # bytes announced (or read) before giving up


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

class Config:
    """Settings that the command line sets and POST /_double/config changes."""

    KEYS = ("rate_limit", "rate_window", "tokens", "campaign_tokens",
            "responses_enabled", "max_batch", "max_body")

    def __init__(self, rate_limit=100, rate_window=60.0, tokens=(), campaign_tokens=None,
                 responses_enabled=True, max_batch=None, max_body=None):
        self.rate_limit = rate_limit
        self.rate_window = float(rate_window)
        self.tokens = set(tokens)
        # campaign -> set of tokens accepted only for that campaign
        self.campaign_tokens = {camp: set(toks) for camp, toks in (campaign_tokens or {}).items()}
        self.responses_enabled = responses_enabled
        self.max_batch = max_batch
        # bytes: a larger lead request is answered 413, as a proxy in front of the API would
        self.max_body = max_body

    def copy(self):
        return Config(self.rate_limit, self.rate_window, self.tokens, self.campaign_tokens,
                      self.responses_enabled, self.max_batch, self.max_body)

    def to_json(self):
        return {
            "rate_limit": self.rate_limit,
            "rate_window": self.rate_window,
            "tokens": sorted(self.tokens),
            "campaign_tokens": {camp: sorted(toks) for camp, toks in sorted(self.campaign_tokens.items())},
            "responses_enabled": self.responses_enabled,
            "max_batch": self.max_batch,
            "max_body": self.max_body,
        }

    def apply(self, changes):
        """Apply a config object in place; raises ValueError on any bad value.

        Callers apply to a copy and swap it in, so a bad request changes nothing.
        """
        if not isinstance(changes, dict):
            raise ValueError("config must be a JSON object")
        unknown = sorted(set(changes) - set(self.KEYS))
        if unknown:
            raise ValueError("unknown config key(s): " + ", ".join(unknown))
        if "rate_limit" in changes:
            value = changes["rate_limit"]
            if not is_int(value) or value < 1:
                raise ValueError("rate_limit must be a positive integer")
            self.rate_limit = value
        if "rate_window" in changes:
            value = changes["rate_window"]
            if not is_number(value) or value <= 0:
                raise ValueError("rate_window must be a positive number of seconds")
            self.rate_window = float(value)
        if "tokens" in changes:
            self.tokens = set(token_list(changes["tokens"], "tokens"))
        if "campaign_tokens" in changes:
            value = changes["campaign_tokens"]
            if not isinstance(value, dict):
                raise ValueError("campaign_tokens must be an object {campaign: token or [tokens]}")
            mapping = {}
            for camp, toks in value.items():
                if not CAMPAIGN_RE.fullmatch(camp):
                    raise ValueError("invalid campaign id in campaign_tokens: " + camp)
                mapping[camp] = set(token_list([toks] if isinstance(toks, str) else toks,
                                               "campaign_tokens." + camp))
            self.campaign_tokens = mapping
        if "responses_enabled" in changes:
            if not isinstance(changes["responses_enabled"], bool):
                raise ValueError("responses_enabled must be true or false")
            self.responses_enabled = changes["responses_enabled"]
        if "max_batch" in changes:
            value = changes["max_batch"]
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError("max_batch must be null or a positive integer")
            self.max_batch = value
        if "max_body" in changes:
            value = changes["max_body"]
            if value is not None and (not is_int(value) or not 1 <= value <= MAX_BODY):
                raise ValueError("max_body must be null or an integer from 1 to %d" % MAX_BODY)
            self.max_body = value


def token_list(value, what):
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise ValueError(what + " must be a list of non-empty strings")
    return value


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------

def normalize_fault(rule):
    """Validate one fault rule from the control API and fill in its defaults."""
    if not isinstance(rule, dict):
        raise ValueError("a fault rule must be a JSON object")
    unknown = sorted(set(rule) - FAULT_KEYS)
    if unknown:
        raise ValueError("unknown fault key(s): " + ", ".join(unknown))
    kind = rule.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError("fault kind must be one of " + ", ".join(sorted(FAULT_KINDS)))
    out = {key: None for key in sorted(FAULT_KEYS)}
    out["kind"] = kind
    if kind == "status":
        status = rule.get("status")
        if not is_int(status) or not 200 <= status <= 599:
            raise ValueError("a status fault needs an integer status from 200 to 599")
        out["status"] = status
    if kind == "delay":
        seconds = rule.get("seconds")
        if not is_number(seconds) or seconds < 0:
            raise ValueError("a delay fault needs seconds >= 0")
        out["seconds"] = float(seconds)
    after_effect = rule.get("after_effect", False)
    if not isinstance(after_effect, bool) or (after_effect and kind != "delay"):
        raise ValueError("after_effect must be true or false, and only for a delay fault")
    out["after_effect"] = after_effect
    retry_after = rule.get("retry_after")
    if retry_after is not None:
        if is_number(retry_after):
            retry_after = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        if not isinstance(retry_after, str):
            raise ValueError("retry_after must be a string (or a number of seconds)")
        out["retry_after"] = retry_after
    body = rule.get("body")
    if body is not None and not isinstance(body, str):
        body = json.dumps(body)  # convenience: a JSON value is sent as its JSON text
    out["body"] = body
    for key in ("content_type", "campaign"):
        if rule.get(key) is not None and not isinstance(rule[key], str):
            raise ValueError(key + " must be a string")
        out[key] = rule.get(key)
    if rule.get("method") is not None:
        if not isinstance(rule["method"], str):
            raise ValueError("method must be a string")
        out["method"] = rule["method"].upper()
    endpoint = rule.get("endpoint")
    if endpoint is not None and endpoint not in ENDPOINT_METHODS:
        raise ValueError("endpoint must be one of " + ", ".join(ENDPOINT_METHODS))
    out["endpoint"] = endpoint
    count = rule.get("count")
    if count is not None and (not is_int(count) or count < 1):
        raise ValueError("count must be null (forever) or a positive integer")
    out["count"] = count
    return out


def fault_matches(rule, endpoint, campaign, method):
    return ((rule["endpoint"] is None or rule["endpoint"] == endpoint)
            and (rule["campaign"] is None or rule["campaign"] == campaign)
            and (rule["method"] is None or rule["method"] == method))


def fault_answer(rule):
    """The answer of a status or maintenance fault."""
    if rule["kind"] == "maintenance":
        return json_answer(503, MAINTENANCE, {"Retry-After": rule["retry_after"] or "1"})
    status = rule["status"]
    if rule["body"] is None:
        answer = json_answer(status, {"detail": "injected %d" % status})
    else:
        answer = Answer(status=status, payload=rule["body"].encode("utf-8"),
                        content_type=rule["content_type"] or guess_content_type(rule["body"]))
    if rule["retry_after"] is not None:
        answer.headers["Retry-After"] = rule["retry_after"]
    return answer


def guess_content_type(text):
    try:
        json.loads(text)
        return "application/json"
    except ValueError:
        return "text/html" if text.lstrip().startswith("<") else "text/plain"


# ---------------------------------------------------------------------------
# Shared state
# ---------------------------------------------------------------------------

class DoubleState:
    """Everything the double remembers; every access goes through self.lock."""

    def __init__(self, config, log_path=None):
        self.lock = threading.Lock()
        self.startup_config = config.copy()
        self.config = config
        self.log_fd = open_log(log_path) if log_path else None
        # Bumped by reset so that requests in flight across a reset are forgotten.
        self.generation = 0
        self._clear()

    def _clear(self):
        self.records = []
        self.next_seq = 1
        self.faults = []
        self.leads = {}      # campaign -> lead key -> {"fields", "state", "detail"}
        self.outcomes = {}   # campaign -> lead key -> (processed_at epoch, payload)
        self.admitted = {}   # token -> deque of monotonic receipt times of admitted requests

    # -- recording ---------------------------------------------------------

    def begin_request(self):
        """Number a request in order of receipt."""
        with self.lock:
            seq = self.next_seq
            self.next_seq += 1
            return seq, self.generation

    def finish_request(self, record, generation):
        """Keep the record and append it to the log, before the answer goes out.

        Recording before sending means a test that has its answer can read the record.
        """
        with self.lock:
            if generation != self.generation:
                return
            self.records.append(record)
            if self.log_fd is not None:
                write_all(self.log_fd, (json.dumps(record) + "\n").encode("utf-8"))

    def requests_since(self, since):
        with self.lock:
            return sorted((r for r in self.records if r["seq"] > since), key=lambda r: r["seq"])

    # -- auth and rate limit --------------------------------------------------

    def token_allowed(self, token, campaign):
        with self.lock:
            cfg = self.config
            return token in cfg.tokens or token in cfg.campaign_tokens.get(campaign, ())

    def admit(self, token, now):
        """Sliding-window log per token.

        Returns None when the request is admitted (and counts it), else the
        Retry-After seconds until enough admitted requests have left the window.
        """
        with self.lock:
            limit, window = self.config.rate_limit, self.config.rate_window
            times = self.admitted.setdefault(token, deque())
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) < limit:
                times.append(now)
                return None
            # The limit may have been lowered, so more than one may have to leave.
            leaving = times[len(times) - limit]
            return max(1, math.ceil(leaving + window - now))

    # -- faults ------------------------------------------------------------

    def add_faults(self, rules):
        with self.lock:
            self.faults.extend(rules)

    def take_fault(self, endpoint, campaign, method):
        """The first matching rule (a copy), with its count used up by one."""
        with self.lock:
            for index, rule in enumerate(self.faults):
                if not fault_matches(rule, endpoint, campaign, method):
                    continue
                taken = dict(rule)
                if rule["count"] is not None:
                    rule["count"] -= 1
                    if rule["count"] <= 0:
                        del self.faults[index]
                return taken
            return None

    # -- control -----------------------------------------------------------

    def reset(self, changes):
        """Forget everything recorded; keep the config unless changes say otherwise."""
        if not isinstance(changes, dict):
            raise ValueError("reset body must be a JSON object")
        changes = dict(changes)
        defaults = changes.pop("defaults", False)
        if not isinstance(defaults, bool):
            raise ValueError("defaults must be true or false")
        with self.lock:
            config = (self.startup_config if defaults else self.config).copy()
            config.apply(changes)  # may raise: nothing has been cleared yet
            self.config = config
            self._clear()
            self.generation += 1
            if self.log_fd is not None:
                os.ftruncate(self.log_fd, 0)

    def set_config(self, changes):
        with self.lock:
            config = self.config.copy()
            config.apply(changes)
            self.config = config

    def store_outcomes(self, items):
        prepared = []
        for item in items:
            if not isinstance(item, dict):
                raise ValueError("each outcome must be a JSON object")
            campaign = item.get("campaign_id")
            if not (isinstance(campaign, str) and CAMPAIGN_RE.fullmatch(campaign)):
                raise ValueError("each outcome needs a valid campaign_id")
            if not valid_lead_id(item.get("lead_id")):
                raise ValueError("each outcome needs a lead_id")
            if item.get("processed_at") is None:
                # Keep the payload as given; sort it as processed when it was stored.
                processed = time.time()
            else:
                processed = parse_timestamp(item["processed_at"])
                if processed is None:
                    raise ValueError("processed_at must be ISO-8601 or epoch seconds")
            prepared.append((campaign, lead_key(item["lead_id"]), processed, copy.deepcopy(item)))
        with self.lock:
            for campaign, key, processed, item in prepared:
                self.outcomes.setdefault(campaign, {})[key] = (processed, item)
        return len(prepared)

    def close(self):
        if self.log_fd is not None:
            os.close(self.log_fd)
            self.log_fd = None


def open_log(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        # Another user (the database server) reads this file; the umask may have hidden it.
        os.fchmod(fd, 0o644)
    except OSError:
        pass  # someone else's file: leave its mode alone
    return fd


def write_all(fd, data):
    # One write per line keeps lines whole for a concurrent reader; loop for safety.
    while data:
        written = os.write(fd, data)
        data = data[written:]


# ---------------------------------------------------------------------------
# Lead endpoints (called with state.lock held)
# ---------------------------------------------------------------------------

def lead_exists(campaign_leads, key):
    lead = campaign_leads.get(key)
    return lead is not None and lead["state"] != "deleted"


def as_batch(body, config):
    """A create/disable body as a list: an array, or a single object as one item."""
    batch = [body] if isinstance(body, dict) else body
    if not isinstance(batch, list):
        raise bad_request("expected a JSON array of objects")
    if not batch:
        raise bad_request("no leads given")
    if config.max_batch is not None and len(batch) > config.max_batch:
        raise bad_request("too many leads in one call (at most %d)" % config.max_batch)
    return batch


def single_object(body):
    if not isinstance(body, dict):
        raise bad_request("expected a JSON object")
    return body


def require_lead_id(item):
    if not isinstance(item, dict):
        raise bad_request("each item must be a JSON object")
    if "lead_id" not in item:
        raise bad_request("lead_id is required")
    if not valid_lead_id(item["lead_id"]):
        raise bad_request("lead_id must be a string of 1 to 255 characters or an integer",
                          reported_lead_id(item["lead_id"]))
    return item["lead_id"]


def check_phone(value, lead_id):
    if not isinstance(value, str) or not PHONE_RE.fullmatch(value):
        raise bad_request("invalid phone_number", lead_id)


def check_contact_name(value, lead_id):
    if not isinstance(value, str) or not value.strip():
        raise bad_request("contact_name must be a non-empty string", lead_id)


def check_custom_fields(fields, lead_id):
    for name, value in fields.items():
        if name not in FIXED_LEAD_KEYS and not is_scalar(value):
            raise bad_request("custom field %s must be a string, number, boolean or null" % name,
                              lead_id)


def check_new_lead(lead):
    lead_id = require_lead_id(lead)
    for required in ("phone_number", "contact_name"):
        if required not in lead:
            raise bad_request(required + " is required", lead_id)
    check_phone(lead["phone_number"], lead_id)
    check_contact_name(lead["contact_name"], lead_id)
    check_custom_fields(lead, lead_id)
    return lead_id


def op_create(leads, campaign, body, config):
    batch = as_batch(body, config)
    existing = leads.get(campaign, {})
    seen = set()
    # Validate everything first: one bad lead rejects the whole call.
    for lead in batch:
        lead_id = check_new_lead(lead)
        key = lead_key(lead_id)
        if key in seen:
            raise bad_request("duplicate lead_id in request", lead_id)
        if lead_exists(existing, key):
            raise bad_request("lead already exists", lead_id)
        seen.add(key)
    stored = leads.setdefault(campaign, {})
    for lead in batch:
        stored[lead_key(lead["lead_id"])] = {
            "fields": copy.deepcopy(lead), "state": "created", "detail": None}
    return json_answer(201, {"created": len(batch)})


def op_disable(leads, campaign, body, config):
    batch = as_batch(body, config)
    stored = leads.get(campaign, {})
    keys = []
    for item in batch:
        lead_id = require_lead_id(item)
        if not lead_exists(stored, lead_key(lead_id)):
            raise bad_request("lead does not exist", lead_id)
        keys.append(lead_key(lead_id))
    for key in keys:
        stored[key]["state"] = "disabled"
    return json_answer(201, {"disabled": len(batch)})


def op_delete(leads, campaign, body, config):
    key = lead_key(require_lead_id(single_object(body)))
    stored = leads.get(campaign, {})
    if not lead_exists(stored, key):
        raise not_found()
    # Deleting erases the personal data; only the fact that it was deleted remains.
    stored[key] = {"fields": {}, "state": "deleted", "detail": None}
    return json_answer(202, {"deleted": key})


def op_update(leads, campaign, body, config):
    item = single_object(body)
    lead_id = require_lead_id(item)
    changes = {name: value for name, value in item.items() if name != "lead_id"}
    if not changes:
        raise bad_request("nothing to update: give at least one field besides lead_id", lead_id)
    stored = leads.get(campaign, {})
    key = lead_key(lead_id)
    if not lead_exists(stored, key):
        raise not_found()
    if "phone_number" in changes:
        check_phone(changes["phone_number"], lead_id)
    if "contact_name" in changes:
        check_contact_name(changes["contact_name"], lead_id)
    check_custom_fields(changes, lead_id)
    stored[key]["fields"].update(copy.deepcopy(changes))
    return json_answer(200, {"updated": key})


def op_convert(leads, campaign, body, config):
    item = single_object(body)
    lead_id = require_lead_id(item)
    detail = item.get("detail")
    if not (isinstance(detail, str) and 1 <= len(detail) <= 32):
        raise bad_request("detail must be a string of 1 to 32 characters", lead_id)
    stored = leads.get(campaign, {})
    key = lead_key(lead_id)
    if not lead_exists(stored, key):
        raise not_found()
    stored[key]["state"] = "converted"
    stored[key]["detail"] = detail
    return json_answer(200, {"converted": key})


LEAD_OPERATIONS = {
    "create": op_create,
    "disable": op_disable,
    "delete": op_delete,
    "update": op_update,
    "convert": op_convert,
}


# ---------------------------------------------------------------------------
# Responses endpoint
# ---------------------------------------------------------------------------

def epoch_param(query, name):
    if name not in query:
        return None
    try:
        value = float(query[name])
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ApiError(400, {"error": name + " must be epoch seconds"})
    return value


def page_params(query):
    try:
        page = int(query.get("page", "1"))
    except ValueError:
        page = 0
    if page < 1:
        raise ApiError(404, dict(INVALID_PAGE))
    try:
        size = int(query.get("page_size", str(DEFAULT_PAGE_SIZE)))
    except ValueError:
        size = 0
    if size < 1:
        raise ApiError(400, {"error": "page_size must be a positive integer"})
    return page, min(size, MAX_PAGE_SIZE)


def page_url(req, page):
    """Absolute URL of another page: the same query with page replaced (dropped for 1)."""
    pairs = [(k, v) for k, v in req.query_pairs if k != "page"]
    if page != 1:
        pairs.append(("page", str(page)))
    query = urlencode(pairs)
    return "http://%s%s%s" % (req.host, req.path, "?" + query if query else "")


def list_responses(state, req, campaign):
    lead_filter = req.query.get("lead_id")
    after = epoch_param(req.query, "processed_after")
    before = epoch_param(req.query, "processed_before")
    page, size = page_params(req.query)
    with state.lock:
        items = [(processed, key, payload)
                 for key, (processed, payload) in state.outcomes.get(campaign, {}).items()]
    # processed_after is inclusive and processed_before exclusive, so that consecutive
    # windows [a, b) and [b, c) neither overlap nor leave a gap.
    items = [item for item in items
             if (lead_filter is None or item[1] == lead_filter)
             and (after is None or item[0] >= after)
             and (before is None or item[0] < before)]
    items.sort(key=lambda item: (item[0], item[1]))
    count = len(items)
    pages = max(1, math.ceil(count / size))
    if page > pages:
        raise ApiError(404, dict(INVALID_PAGE))
    chosen = items[(page - 1) * size:page * size]
    return json_answer(200, {
        "count": count,
        "next": page_url(req, page + 1) if page < pages else None,
        "previous": page_url(req, page - 1) if page > 1 else None,
        "results": [copy.deepcopy(payload) for _, _, payload in chosen],
    })


# ---------------------------------------------------------------------------
# API request handling
# ---------------------------------------------------------------------------

@dataclass
class ApiRequest:
    method: str
    path: str
    query_pairs: list
    headers: object
    host: str
    received_at: float
    received_mono: float
    seq: int
    generation: int
    raw: bytes = b""
    body_bytes: int = 0  # as received, or as announced for a body too large to read
    endpoint: str = None
    campaign: str = None

    @property
    def query(self):
        return dict(self.query_pairs)  # the last value wins for a repeated parameter


def bearer_token(header):
    """The token of 'Bearer <token>' (scheme case-insensitive), else None."""
    if header is None:
        return None
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


def parse_body(req):
    content_type = req.headers.get("Content-Type") or ""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(400, {"error": "Content-Type must be application/json"})
    try:
        return parse_json(req.raw)
    except ValueError:
        raise ApiError(400, {"error": "invalid JSON"}) from None


def handle_api(state, req):
    """Answer one API request, in the order route, auth, rate limit, faults, body, effect."""
    route = ROUTE_RE.fullmatch(req.path)
    if route is None:
        return json_answer(404, NOT_FOUND)
    endpoint, campaign = route.group(1), route.group(2)
    req.endpoint, req.campaign = endpoint, campaign
    with state.lock:
        responses_enabled = state.config.responses_enabled
    if endpoint == "responses" and not responses_enabled:
        return json_answer(404, NOT_FOUND)  # as if this account did not have it
    allowed = ENDPOINT_METHODS[endpoint]
    if req.method != allowed:
        return json_answer(405, {"detail": 'Method "%s" not allowed.' % req.method},
                           {"Allow": allowed})

    token = bearer_token(req.headers.get("Authorization"))
    if token is None:
        return json_answer(401, NO_CREDENTIALS, {"WWW-Authenticate": 'Bearer realm="api"'})
    if not state.token_allowed(token, campaign):
        return json_answer(403, NO_PERMISSION)
    with state.lock:
        max_body = state.config.max_body
    if max_body is not None and len(req.raw) > max_body:
        # Refused before the API itself sees it: not rate-limited, no fault.
        return json_answer(413, TOO_LARGE)
    retry_after = state.admit(token, req.received_mono)
    if retry_after is not None:
        return json_answer(429, THROTTLED, {"Retry-After": str(retry_after)})

    rule = state.take_fault(endpoint, campaign, req.method)
    kind = rule["kind"] if rule else None
    if kind in ("status", "maintenance"):
        answer = fault_answer(rule)
    elif kind == "drop":
        answer = Answer(status=None, drop=True)
    else:
        if kind == "delay" and not rule["after_effect"]:
            time.sleep(rule["seconds"])  # outside the lock: other requests go on meanwhile
        answer = process(state, req, endpoint, campaign)
        if kind == "delay" and rule["after_effect"]:
            # The API has done the work; only its answer is late (a call cut
            # by a crash or timeout then has an effect the client did not see).
            time.sleep(rule["seconds"])
        if kind == "nonjson":
            answer = Answer(status=answer.status, payload=b"<html>OK</html>",
                            content_type="text/html")
    answer.fault = kind
    return answer


def process(state, req, endpoint, campaign):
    """Validate the request and apply its effect."""
    try:
        if endpoint == "responses":
            return list_responses(state, req, campaign)
        body = parse_body(req)
        with state.lock:
            # A request that was in flight across a reset is answered against a
            # throwaway copy, so that it cannot leak into the state after the reset.
            leads = state.leads if req.generation == state.generation else copy.deepcopy(state.leads)
            return LEAD_OPERATIONS[endpoint](leads, campaign, body, state.config)
    except ApiError as error:
        return json_answer(error.status, error.body)


def build_record(req, answer):
    body = try_parse_json(req.raw)
    return {
        "seq": req.seq,
        "received_at": req.received_at,
        "answered_at": time.time(),
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "endpoint": req.endpoint,
        "campaign": req.campaign,
        "authorization": req.headers.get("Authorization"),
        "content_type": req.headers.get("Content-Type"),
        "body": body,
        "raw_body": req.raw.decode("utf-8", "replace"),
        "body_bytes": req.body_bytes,
        "status": None if answer.drop else answer.status,
        "fault": answer.fault,
        "lead_ids": extract_lead_ids(body),
    }


# ---------------------------------------------------------------------------
# Control API (no auth, not recorded, not rate-limited)
# ---------------------------------------------------------------------------

def ok():
    return json_answer(200, {"ok": True})


def ctl_health(state, query, body):
    return ok()


def ctl_requests(state, query, body):
    try:
        since = int(query.get("since", "0"))
    except ValueError:
        raise ValueError("since must be an integer") from None
    return json_answer(200, state.requests_since(since))


def ctl_reset(state, query, body):
    state.reset({} if body is None else body)
    return ok()


def ctl_add_faults(state, query, body):
    rules = body if isinstance(body, list) else [body]
    state.add_faults([normalize_fault(rule) for rule in rules])
    return ok()


def ctl_list_faults(state, query, body):
    with state.lock:
        return json_answer(200, copy.deepcopy(state.faults))


def ctl_clear_faults(state, query, body):
    with state.lock:
        state.faults = []
    return ok()


def ctl_get_config(state, query, body):
    with state.lock:
        return json_answer(200, state.config.to_json())


def ctl_set_config(state, query, body):
    state.set_config({} if body is None else body)
    return ok()


def ctl_leads(state, query, body):
    with state.lock:
        return json_answer(200, copy.deepcopy(state.leads))


def ctl_get_outcomes(state, query, body):
    with state.lock:
        return json_answer(200, {camp: [payload for _, payload in by_lead.values()]
                                 for camp, by_lead in state.outcomes.items()})


def ctl_add_outcomes(state, query, body):
    state.store_outcomes(body if isinstance(body, list) else [body])
    return ok()


CONTROL_ROUTES = {
    "/health": {"GET": ctl_health},
    "/requests": {"GET": ctl_requests},
    "/reset": {"POST": ctl_reset},
    "/fault": {"POST": ctl_add_faults},
    "/faults": {"GET": ctl_list_faults},
    "/faults/clear": {"POST": ctl_clear_faults},
    "/config": {"GET": ctl_get_config, "POST": ctl_set_config},
    "/leads": {"GET": ctl_leads},
    "/outcomes": {"GET": ctl_get_outcomes, "POST": ctl_add_outcomes},
}


def is_control_path(path):
    return path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")


def handle_control(state, method, path, query, raw):
    """Control API under /_double/:

    GET  health                  {"ok": true}
    GET  requests[?since=SEQ]    records with seq > SEQ, in seq order
    POST reset                   optional body: {"defaults": true} and/or config keys
    POST fault                   one rule or an array of rules, appended
    GET  faults                  the rules in force, with their remaining counts
    POST faults/clear            removes all rules
    GET  config / POST config    the settings / change some of them
    GET  leads                   {campaign: {lead_id: {"fields", "state", "detail"}}}
    GET  outcomes / POST outcomes  stored outcome records / add webhook-shaped records
    Errors answer 400 {"error": "..."}.
    """
    name = path[len(CONTROL_PREFIX):].rstrip("/")
    methods = CONTROL_ROUTES.get(name)
    if methods is None:
        return json_answer(404, NOT_FOUND)
    if method not in methods:
        return json_answer(405, {"detail": 'Method "%s" not allowed.' % method},
                           {"Allow": ", ".join(methods)})
    try:
        body = parse_json(raw) if raw.strip() else None
    except ValueError:
        return json_answer(400, {"error": "invalid JSON"})
    try:
        return methods[method](state, query, body)
    except ValueError as error:
        return json_answer(400, {"error": str(error)})


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------

class DoubleHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 with keep-alive, as the real API and libcurl use it.
    protocol_version = "HTTP/1.1"
    server_version = "squadstack-api-double"

    def version_string(self):
        return self.server_version  # no Python version in the Server header

    def log_message(self, format, *args):
        pass  # quiet: the recorded requests are the log

    def setup(self):
        super().setup()
        # headers and body go out in separate writes: without this, Nagle's
        # algorithm and delayed ACKs add 40 ms to answers on a reused
        # connection, which would distort latency measurements
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _dispatch(self):
        state = self.server.state
        received_at, received_mono = time.time(), time.monotonic()
        split = urlsplit(self.path)
        query_pairs = parse_qsl(split.query, keep_blank_values=True)
        try:
            raw, body_error = self._read_body(), None
        except BodyError as error:
            raw, body_error = b"", error
            self.close_connection = True  # the stream position is unknown now

        if is_control_path(split.path):
            if body_error is not None:
                answer = json_answer(body_error.status, {"error": body_error.reason})
            else:
                answer = handle_control(state, self.command, split.path, dict(query_pairs), raw)
            self._send(answer)
            return

        seq, generation = state.begin_request()
        req = ApiRequest(method=self.command, path=split.path, query_pairs=query_pairs,
                         headers=self.headers,
                         host=self.headers.get("Host") or "%s:%d" % (HOST, self.server.server_address[1]),
                         received_at=received_at, received_mono=received_mono,
                         seq=seq, generation=generation, raw=raw,
                         body_bytes=body_error.size if body_error is not None else len(raw))
        if body_error is not None:
            answer = json_answer(body_error.status, {"error": body_error.reason})
            answer.close = True
        else:
            answer = handle_api(state, req)
        state.finish_request(build_record(req, answer), generation)
        self._send(answer)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
            if size < 0:
                raise ValueError
        except ValueError:
            raise BodyError(400, "invalid Content-Length") from None
        if size > MAX_BODY:
            raise BodyError(413, "request body too large", size)
        return self.rfile.read(size)

    def _read_chunked(self):
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BodyError(400, "invalid chunked encoding") from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise BodyError(413, "request body too large", total)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after the chunk

    def _send(self, answer):
        if answer.drop:
            self.close_connection = True  # no answer at all: just close
            return
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.payload)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if answer.close:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client went away


class DoubleServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow (delayed) answer must not hold up other requests or exit
    request_queue_size = 64

    def __init__(self, port, state):
        super().__init__((HOST, port), DoubleHandler)
        self.state = state

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client hanging up is not an error of the double
        super().handle_error(request, client_address)


# ---------------------------------------------------------------------------
# Process lifecycle
# ---------------------------------------------------------------------------

def write_port_file(path, port):
    # Write then rename, so a reader polling for the file never sees a partial number.
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w", encoding="ascii") as out:
        out.write("%d\n" % port)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    # A zombie still answers kill(0); it is gone all the same.
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def wait_for_stop(stop, max_lifetime, parent_pid):
    """Block until a signal, the lifetime's end or the parent's exit; return why."""
    deadline = time.monotonic() + max_lifetime
    next_parent_check = 0.0
    while not stop.is_set():
        now = time.monotonic()
        if now >= deadline:
            return "max lifetime reached"
        if parent_pid is not None and now >= next_parent_check:
            if not process_alive(parent_pid):
                return "parent process %d is gone" % parent_pid
            next_parent_check = now + 1.0
        stop.wait(min(0.2, deadline - now))
    return None


def campaign_token(text):
    campaign, sep, token = text.partition("=")
    if not sep or not token or not CAMPAIGN_RE.fullmatch(campaign):
        raise argparse.ArgumentTypeError("expected CAMPAIGN=TOKEN, got %r" % text)
    return campaign, token


def positive(kind):
    def convert(text):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError("must be positive: %r" % text)
        return value
    return convert


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Fake SquadStack API v4 server for tests.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick a free one)")
    parser.add_argument("--port-file", help="write the port number to this file once listening")
    parser.add_argument("--log", help="append every API request as a JSON line to this file")
    parser.add_argument("--token", action="append", default=[],
                        help="a token accepted for every campaign (repeatable)")
    parser.add_argument("--campaign-token", action="append", default=[], type=campaign_token,
                        metavar="CAMPAIGN=TOKEN", help="a token accepted for one campaign (repeatable)")
    parser.add_argument("--rate-limit", type=positive(int), default=100,
                        help="requests admitted per token per window (default 100)")
    parser.add_argument("--rate-window", type=positive(float), default=60.0,
                        help="sliding window in seconds (default 60)")
    parser.add_argument("--max-body", type=positive(int),
                        help="answer 413 to lead requests whose body has more bytes than this")
    parser.add_argument("--max-lifetime", type=positive(float), default=3600.0,
                        help="exit after this many seconds (default 3600)")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    campaign_tokens = {}
    for campaign, token in args.campaign_token:
        campaign_tokens.setdefault(campaign, set()).add(token)
    if args.max_body is not None and args.max_body > MAX_BODY:
        print("api_double: --max-body may be at most %d" % MAX_BODY, file=sys.stderr)
        return 2
    config = Config(rate_limit=args.rate_limit, rate_window=args.rate_window,
                    tokens=args.token, campaign_tokens=campaign_tokens,
                    max_body=args.max_body)
    state = DoubleState(config, args.log)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    server = DoubleServer(args.port, state)  # bound and listening from here on
    # serve_forever runs in a thread so the main thread can watch signals and timers
    # and call shutdown(), which would deadlock if called from serve_forever's thread.
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                               daemon=True)
    serving.start()
    if args.port_file:
        write_port_file(args.port_file, server.server_address[1])

    reason = wait_for_stop(stop, args.max_lifetime, args.parent_pid)
    if reason:
        print("api_double: %s, exiting" % reason, file=sys.stderr)
    server.shutdown()
    server.server_close()
    state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
