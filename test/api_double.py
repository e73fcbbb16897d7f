#!/usr/bin/env python3
"""A fake SquadStack API v4 server (the "API double") for the extension's tests.

It answers the lead endpoints of the v4 API closely enough for the extension to be
exercised end to end, records every request it receives, and can be told through a
small control API under /_double/ to misbehave (errors, delays, dropped connections,
non-JSON answers, maintenance).  Python standard library only.

    python3 test/api_double.py --port 0 --port-file PORTFILE --token TOKEN

It also plays SquadStack's side of the "lead processed" webhook.  POST
/_double/process {"campaign": "c1"} marks the campaign's created leads processed
(the responses endpoint then lists them) and POSTs one payload per lead, as JSON
with no signature, to the campaign's webhook URL, from a background thread:

    --webhook-url 'http://127.0.0.1:PORT/squadstack/webhook/{campaign}/SECRET'
    --campaign-webhook-url c1=URL      (wins over --webhook-url for c1)
    --auto-process SECONDS             (process each created lead by itself)

Only http URLs of 127.0.0.1, localhost or [::1] are accepted: the double sends
nowhere else.  A webhook answered with 2xx is delivered; 3xx and 4xx (but 429)
end it as rejected; no answer, a timeout, 429 or 5xx is tried again after
--webhook-retry-base seconds, doubled each time up to --webhook-retry-max, for
--webhook-attempts attempts in all (then it is given up).  Each attempt waits
--webhook-timeout seconds at most; --webhook-queue-limit bounds what may wait.
Every attempt is recorded, the URL's secret segment shown as ***, and listed by
GET /_double/webhooks.  The same settings can be changed with POST
/_double/config (webhook_url, webhook_urls, webhook_attempts,
webhook_retry_base, webhook_retry_max, webhook_timeout, webhook_queue_limit,
auto_process: null, seconds or {"delay", "outcome", "lead_responses"}).  A reset
forgets queued webhooks; at exit the sender stops without waiting for a receiver.

See --help for every option; the control API is described in handle_control().
"""

import argparse
import copy
import heapq
import http.client
import ipaddress
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
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

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

# Webhooks go to this machine only: the double never sends anywhere else.
WEBHOOK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_OUTCOME = "Connected : Objective Met"
PROCESS_KEYS = {"campaign", "lead_ids", "outcome", "lead_responses", "processed_at",
                "latest_recording_url"}
AUTO_PROCESS_KEYS = {"delay", "outcome", "lead_responses"}
# Webhook attempts kept for GET /_double/webhooks (the oldest are forgotten first).
WEBHOOK_LOG_LIMIT = 100000
# The most of a receiver's answer kept in an attempt's record.
WEBHOOK_ANSWER_CHARS = 1000


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
            "responses_enabled", "max_batch", "max_body",
            "webhook_url", "webhook_urls", "webhook_attempts", "webhook_retry_base",
            "webhook_retry_max", "webhook_timeout", "webhook_queue_limit", "auto_process")

    def __init__(self, rate_limit=100, rate_window=60.0, tokens=(), campaign_tokens=None,
                 responses_enabled=True, max_batch=None, max_body=None,
                 webhook_url=None, webhook_urls=None, webhook_attempts=5,
                 webhook_retry_base=1.0, webhook_retry_max=30.0, webhook_timeout=10.0,
                 webhook_queue_limit=1000, auto_process=None):
        self.rate_limit = rate_limit
        self.rate_window = float(rate_window)
        self.tokens = set(tokens)
        # campaign -> set of tokens accepted only for that campaign
        self.campaign_tokens = {camp: set(toks) for camp, toks in (campaign_tokens or {}).items()}
        self.responses_enabled = responses_enabled
        self.max_batch = max_batch
        # bytes: a larger lead request is answered 413, as a proxy in front of the API would
        self.max_body = max_body
        # URL templates ({campaign} is replaced) of the lead-processed webhook:
        # the default one and one per campaign, which wins
        self.webhook_url = webhook_url
        self.webhook_urls = dict(webhook_urls or {})
        self.webhook_attempts = webhook_attempts
        self.webhook_retry_base = float(webhook_retry_base)
        self.webhook_retry_max = float(webhook_retry_max)
        self.webhook_timeout = float(webhook_timeout)
        self.webhook_queue_limit = webhook_queue_limit
        # None, or {"delay", "outcome", "lead_responses"}: process each created lead
        self.auto_process = copy.deepcopy(auto_process)

    def copy(self):
        return Config(self.rate_limit, self.rate_window, self.tokens, self.campaign_tokens,
                      self.responses_enabled, self.max_batch, self.max_body,
                      self.webhook_url, self.webhook_urls, self.webhook_attempts,
                      self.webhook_retry_base, self.webhook_retry_max, self.webhook_timeout,
                      self.webhook_queue_limit, self.auto_process)

    def to_json(self):
        return {
            "rate_limit": self.rate_limit,
            "rate_window": self.rate_window,
            "tokens": sorted(self.tokens),
            "campaign_tokens": {camp: sorted(toks) for camp, toks in sorted(self.campaign_tokens.items())},
            "responses_enabled": self.responses_enabled,
            "max_batch": self.max_batch,
            "max_body": self.max_body,
            # the secret in a webhook URL is not shown
            "webhook_url": None if self.webhook_url is None else mask_webhook_url(self.webhook_url),
            "webhook_urls": {camp: mask_webhook_url(url)
                             for camp, url in sorted(self.webhook_urls.items())},
            "webhook_attempts": self.webhook_attempts,
            "webhook_retry_base": self.webhook_retry_base,
            "webhook_retry_max": self.webhook_retry_max,
            "webhook_timeout": self.webhook_timeout,
            "webhook_queue_limit": self.webhook_queue_limit,
            "auto_process": copy.deepcopy(self.auto_process),
        }

    def webhook_template(self, campaign):
        """The webhook URL template for a campaign, or None when there is none."""
        return self.webhook_urls.get(campaign, self.webhook_url)

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
        self._apply_webhooks(changes)

    def _apply_webhooks(self, changes):
        if "webhook_url" in changes:
            value = changes["webhook_url"]
            self.webhook_url = None if value is None else check_webhook_url(value)
        if "webhook_urls" in changes:
            value = changes["webhook_urls"]
            if not isinstance(value, dict):
                raise ValueError("webhook_urls must be an object {campaign: URL}")
            for camp, url in value.items():
                if not CAMPAIGN_RE.fullmatch(camp):
                    raise ValueError("invalid campaign id in webhook_urls: " + camp)
                check_webhook_url(url)
            self.webhook_urls = dict(value)
        if "webhook_attempts" in changes:
            self.webhook_attempts = bounded_int(changes["webhook_attempts"], "webhook_attempts",
                                                1, 20)
        for key, high in (("webhook_retry_base", 3600), ("webhook_retry_max", 3600),
                          ("webhook_timeout", 300)):
            if key in changes:
                value = changes[key]
                if not is_number(value) or not 0 < value <= high:
                    raise ValueError("%s must be a number of seconds above 0, at most %d"
                                     % (key, high))
                setattr(self, key, float(value))
        if "webhook_queue_limit" in changes:
            self.webhook_queue_limit = bounded_int(changes["webhook_queue_limit"],
                                                   "webhook_queue_limit", 1, 100000)
        if "auto_process" in changes:
            self.auto_process = auto_process_setting(changes["auto_process"])


def bounded_int(value, name, low, high):
    if not is_int(value) or not low <= value <= high:
        raise ValueError("%s must be an integer from %d to %d" % (name, low, high))
    return value


def check_webhook_url(template):
    """The template if it is an http URL of this machine, else ValueError.

    {campaign} may stand anywhere in the path or query; it is replaced by a campaign
    id, which never changes the host.
    """
    if not isinstance(template, str) or not template or len(template) > 2000:
        raise ValueError("a webhook URL must be a non-empty string")
    try:
        parts = urlsplit(template.replace("{campaign}", "c"))
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError("invalid webhook URL") from None
    if parts.scheme != "http":
        raise ValueError("a webhook URL must be http://")
    if host not in WEBHOOK_HOSTS or parts.username is not None or parts.password is not None:
        raise ValueError("a webhook URL may only name 127.0.0.1, localhost or [::1]: "
                         "the double sends nowhere else")
    if port == 0:
        raise ValueError("a webhook URL needs a port other than 0")
    if "{" in parts.path + parts.query or "}" in parts.path + parts.query:
        raise ValueError("a webhook URL may hold no placeholder but {campaign}")
    return template


def mask_webhook_url(url):
    """The URL with its secret path segment and query values replaced by ***.

    The secret segment is the one after the campaign's segment ({campaign} in a
    template), else the last one: /squadstack/webhook/c1/SECRET shows as
    /squadstack/webhook/c1/***.
    """
    parts = urlsplit(url)
    segments = parts.path.split("/")
    filled = [i for i, seg in enumerate(segments) if seg]
    secret = None
    if "{campaign}" in segments:
        after = segments.index("{campaign}") + 1
        secret = after if after < len(segments) and segments[after] else None
    elif filled:
        secret = filled[-1]
    if secret is not None:
        segments[secret] = "***"
    query = urlencode([(key, "***") for key, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, parts.netloc, "/".join(segments), query, ""))


def auto_process_setting(value):
    """None, or {"delay", "outcome", "lead_responses"} from a number or an object."""
    if value is None or value is False:
        return None
    if is_number(value):
        value = {"delay": value}
    if not isinstance(value, dict):
        raise ValueError("auto_process must be null, a delay in seconds or an object "
                         "{delay, outcome, lead_responses}")
    unknown = sorted(set(value) - AUTO_PROCESS_KEYS)
    if unknown:
        raise ValueError("unknown auto_process key(s): " + ", ".join(unknown))
    delay = value.get("delay", 1.0)
    if not is_number(delay) or not 0 <= delay <= 3600:
        raise ValueError("auto_process.delay must be from 0 to 3600 seconds")
    return {"delay": float(delay),
            "outcome": outcome_text(value.get("outcome", DEFAULT_OUTCOME)),
            "lead_responses": responses_object(value.get("lead_responses", {}))}


def outcome_text(value):
    if not isinstance(value, str) or not 1 <= len(value) <= 255:
        raise ValueError("outcome must be a string of 1 to 255 characters")
    return value


def responses_object(value):
    if not isinstance(value, dict):
        raise ValueError("lead_responses must be a JSON object")
    return copy.deepcopy(value)


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
# Lead-processed webhooks
# ---------------------------------------------------------------------------

def iso_time(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def webhook_phone(value):
    """The phone number as the webhook shows it: +91 and ten digits."""
    digits = re.sub(r"[^0-9]", "", value) if isinstance(value, str) else ""
    return "+91" + digits[-10:] if len(digits) >= 10 else value


def outcome_payload(campaign, fields, created, processed, outcome, responses, recording_url):
    """The lead-processed payload, in the reference's key order."""
    key = lead_key(fields.get("lead_id"))
    return {
        "phone_number": webhook_phone(fields.get("phone_number")),
        "lead_id": fields.get("lead_id"),
        "latest_recording_url": recording_url if recording_url is not None else
        "https://recordings.invalid/%s/%s.mp3" % (campaign, quote(key, safe="")),
        "campaign_id": campaign,
        "latest_called_at": iso_time(max(created, processed - 60)),
        "lead_outcome": outcome,
        "processed_at": iso_time(processed),
        "contact_name": fields.get("contact_name"),
        "created_at": iso_time(created),
        "lead_responses": copy.deepcopy(responses),
    }


@dataclass(order=False)
class WebhookJob:
    """A webhook to deliver ("deliver") or a created lead to process later ("process")."""
    kind: str
    campaign: str
    key: str
    generation: int
    lead_id: object = None
    url: str = None          # with the campaign filled in
    masked: str = None       # the same, secret replaced, for the record
    payload: dict = None
    attempt: int = 0         # attempts made so far
    attempts: int = 1
    retry_base: float = 1.0
    retry_max: float = 30.0
    timeout: float = 10.0
    settings: dict = None    # auto_process settings for a process job


def webhook_job(config, campaign, payload, generation):
    """A deliver job for a payload, or None when the campaign has no webhook URL."""
    template = config.webhook_template(campaign)
    if template is None:
        return None
    return WebhookJob(kind="deliver", campaign=campaign, key=lead_key(payload["lead_id"]),
                      generation=generation, lead_id=payload["lead_id"],
                      url=template.replace("{campaign}", campaign),
                      masked=mask_webhook_url(template).replace("{campaign}", campaign),
                      payload=payload, attempts=config.webhook_attempts,
                      retry_base=config.webhook_retry_base, retry_max=config.webhook_retry_max,
                      timeout=config.webhook_timeout)


def loopback_connection(host, port, timeout):
    """A socket connected to host:port, which must resolve to a loopback address."""
    infos = [info for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
             if ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback]
    if not infos:
        raise OSError("%s does not resolve to a loopback address" % host)
    error = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


def describe_error(error):
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(error, (ConnectionResetError, BrokenPipeError)):
        return "connection reset"
    return "%s: %s" % (type(error).__name__, error)


def should_retry(status):
    """A real sender tries again after no answer, 429 and 5xx; 2xx, 3xx, 4xx end it."""
    return status is None or status == 429 or status >= 500


class WebhookSender:
    """Delivers webhooks and runs delayed processing from one background thread.

    Jobs wait in a heap ordered by when they are due, so a delivery waiting for
    its retry holds up no other.  Every attempt is recorded.  The thread is a
    daemon that stop() wakes; an attempt in flight is cut off, so shutdown
    never waits for a receiver.
    """

    def __init__(self, processor):
        self.cond = threading.Condition()
        self.processor = processor  # runs a process job (takes the state's lock)
        self.heap = []              # (due monotonic, order, job)
        self.order = 0
        self.in_flight = None       # the deliver job being sent, and its socket
        self.in_flight_sock = None
        self.attempt_log = deque(maxlen=WEBHOOK_LOG_LIMIT)
        self.next_seq = 1
        self.generation = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)

    def start(self):
        self.thread.start()

    def stop(self, wait=1.0):
        with self.cond:
            self.stopping = True
            self._cut_in_flight()
            self.cond.notify_all()
        if self.thread.is_alive():
            self.thread.join(wait)

    def _cut_in_flight(self):
        if self.in_flight_sock is not None:
            try:
                self.in_flight_sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- called with the state's lock held (lock order: state, then sender) --

    def reset(self):
        """Forget every job and attempt; an attempt in flight is cut off and forgotten."""
        with self.cond:
            self.heap = []
            self.attempt_log.clear()
            self.next_seq = 1
            self.generation += 1
            self._cut_in_flight()
            self.cond.notify_all()

    def current_generation(self):
        with self.cond:
            return self.generation

    def queued(self):
        with self.cond:
            return self._queued()

    def _queued(self):
        busy = self.in_flight is not None and self.in_flight.generation == self.generation
        return len(self.heap) + (1 if busy else 0)

    def enqueue(self, jobs, limit, delay=0.0):
        """Queue all jobs, due after delay seconds; False (and nothing queued) when
        they do not fit under limit."""
        with self.cond:
            if self._queued() + len(jobs) > limit:
                return False
            due = time.monotonic() + delay
            for job in jobs:
                self._push(due, job)
            self.cond.notify_all()
            return True

    def record_dropped(self, job, reason):
        with self.cond:
            self._record(job, attempt=0, status=None, error=reason, answer=None,
                         result="dropped", sent_at=time.time())

    def status(self, since):
        with self.cond:
            pending = sum(1 for _, _, job in self.heap if job.kind == "deliver")
            if self.in_flight is not None and self.in_flight.generation == self.generation:
                pending += 1
            return {"pending": pending,
                    "scheduled": sum(1 for _, _, job in self.heap if job.kind == "process"),
                    "attempts": [copy.deepcopy(r) for r in self.attempt_log if r["seq"] > since]}

    # -- internals ------------------------------------------------------------

    def _push(self, due, job):
        self.order += 1
        heapq.heappush(self.heap, (due, self.order, job))

    def _record(self, job, attempt, status, error, answer, result, sent_at):
        self.attempt_log.append({
            "seq": self.next_seq,
            "campaign": job.campaign,
            "lead_id": job.lead_id,
            "url": job.masked,
            "attempt": attempt,
            "attempts": job.attempts,
            "sent_at": sent_at,
            "answered_at": time.time(),
            "status": status,
            "error": error,
            "answer": answer,
            "result": result,
            "payload": copy.deepcopy(job.payload),
        })
        self.next_seq += 1

    def _next_job(self):
        """The next due job (marked in flight if it is a delivery), or None to stop."""
        with self.cond:
            while not self.stopping:
                now = time.monotonic()
                if self.heap and self.heap[0][0] <= now:
                    job = heapq.heappop(self.heap)[2]
                    if job.kind == "deliver":
                        self.in_flight = job
                    return job
                # bounded waits: a lost wake-up costs at most a second
                self.cond.wait(min(1.0, self.heap[0][0] - now) if self.heap else 1.0)
            return None

    def _run(self):
        while True:
            job = self._next_job()
            if job is None:
                return
            if job.kind == "process":
                try:
                    self.processor(job)
                except Exception:  # one bad job must not end the thread
                    pass
                continue
            sent_at = time.time()
            status, error, answer = self._attempt(job)
            with self.cond:
                self.in_flight = None
                if job.generation != self.generation or self.stopping:
                    continue  # reset or shutdown while in flight: forget it
                job.attempt += 1
                if status is not None and 200 <= status < 300:
                    result = "delivered"
                elif not should_retry(status):
                    result = "rejected"
                elif job.attempt >= job.attempts:
                    result = "gave_up"
                else:
                    result = "retrying"
                    delay = min(job.retry_max, job.retry_base * 2 ** (job.attempt - 1))
                    self._push(time.monotonic() + delay, job)
                self._record(job, job.attempt, status, error, answer, result, sent_at)

    def _attempt(self, job):
        """POST the payload once; returns (status or None, error or None, answer text)."""
        parts = urlsplit(job.url)
        host, port = parts.hostname, parts.port or 80
        if host not in WEBHOOK_HOSTS:  # checked when configured; checked again here
            return None, "refused: not a loopback host", None
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        body = json.dumps(job.payload).encode("utf-8")
        connection = sock = None
        try:
            sock = loopback_connection(host, port, job.timeout)
            with self.cond:
                self.in_flight_sock = sock
                if self.stopping or job.generation != self.generation:
                    return None, "cancelled", None
            connection = http.client.HTTPConnection(host, port, timeout=job.timeout)
            connection.sock, sock = sock, None  # the connection closes it from here on
            connection.request("POST", target, body=body, headers={
                "Content-Type": "application/json",
                "User-Agent": "squadstack-api-double",
                "Connection": "close",
            })
            response = connection.getresponse()
            answer = response.read(WEBHOOK_ANSWER_CHARS * 4)
            return (response.status, None,
                    answer.decode("utf-8", "replace")[:WEBHOOK_ANSWER_CHARS])
        except (OSError, http.client.HTTPException) as error:
            return None, describe_error(error), None
        finally:
            with self.cond:
                self.in_flight_sock = None
            if connection is not None:
                connection.close()
            elif sock is not None:
                sock.close()


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
        self.sender = WebhookSender(self.auto_process_lead)
        self._clear()

    def _clear(self):
        self.records = []
        self.next_seq = 1
        self.faults = []
        self.leads = {}      # campaign -> lead key -> {"fields", "state", "detail"}
        self.outcomes = {}   # campaign -> lead key -> (processed_at epoch, payload)
        self.created_at = {}  # campaign -> lead key -> epoch of its (last) create
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
            self.sender.reset()
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

    # -- processing and webhooks -------------------------------------------

    def note_created(self, campaign, keys):
        """After a create (lock held): note when, and schedule processing if
        auto_process is on."""
        now = time.time()
        stamps = self.created_at.setdefault(campaign, {})
        for key in keys:
            stamps[key] = now
        settings = self.config.auto_process
        if settings is None:
            return
        generation = self.sender.current_generation()
        for key in keys:
            job = WebhookJob(kind="process", campaign=campaign, key=key, generation=generation,
                             lead_id=self.leads[campaign][key]["fields"].get("lead_id"),
                             settings=settings)
            if not self.sender.enqueue([job], self.config.webhook_queue_limit, settings["delay"]):
                self.sender.record_dropped(job, "queue full: not processed")

    def _process(self, campaign, keys, outcome, responses, processed, recording_url):
        """Store the outcomes of keys (lock held); returns their payloads."""
        stored = self.leads.get(campaign, {})
        stamps = self.created_at.get(campaign, {})
        payloads = []
        for key in keys:
            payload = outcome_payload(campaign, stored[key]["fields"],
                                      min(stamps.get(key, processed), processed), processed,
                                      outcome, responses, recording_url)
            self.outcomes.setdefault(campaign, {})[key] = (processed, payload)
            payloads.append(payload)
        return payloads

    def process_leads(self, request):
        """POST /_double/process: mark leads processed and queue their webhooks."""
        if not isinstance(request, dict):
            raise ValueError("process needs a JSON object")
        unknown = sorted(set(request) - PROCESS_KEYS)
        if unknown:
            raise ValueError("unknown process key(s): " + ", ".join(unknown))
        campaign = request.get("campaign")
        if not (isinstance(campaign, str) and CAMPAIGN_RE.fullmatch(campaign)):
            raise ValueError("process needs a valid campaign")
        lead_ids = request.get("lead_ids")
        if lead_ids is not None and not (isinstance(lead_ids, list)
                                         and all(valid_lead_id(i) for i in lead_ids)):
            raise ValueError("lead_ids must be a list of lead ids")
        outcome = outcome_text(request.get("outcome", DEFAULT_OUTCOME))
        responses = responses_object(request.get("lead_responses", {}))
        processed = time.time()
        if request.get("processed_at") is not None:
            processed = parse_timestamp(request["processed_at"])
            if processed is None:
                raise ValueError("processed_at must be ISO-8601 or epoch seconds")
        processed = float(math.floor(processed))  # the payload shows whole seconds
        recording_url = request.get("latest_recording_url")
        if recording_url is not None and not isinstance(recording_url, str):
            raise ValueError("latest_recording_url must be a string")
        with self.lock:
            stored = self.leads.get(campaign, {})
            done = self.outcomes.get(campaign, {})
            if lead_ids is None:
                # every created lead not processed yet, in order of creation
                keys = [key for key, lead in stored.items()
                        if lead["state"] == "created" and key not in done]
            else:
                keys = list(dict.fromkeys(lead_key(i) for i in lead_ids))
                missing = [key for key in keys if not lead_exists(stored, key)]
                if missing:
                    raise ValueError("no such lead in campaign %s: %s"
                                     % (campaign, ", ".join(missing[:10])))
            config = self.config
            has_url = config.webhook_template(campaign) is not None
            if has_url and self.sender.queued() + len(keys) > config.webhook_queue_limit:
                raise ValueError("the webhook queue has room for %d more (webhook_queue_limit %d)"
                                 % (max(0, config.webhook_queue_limit - self.sender.queued()),
                                    config.webhook_queue_limit))
            payloads = self._process(campaign, keys, outcome, responses, processed,
                                     recording_url)
            generation = self.sender.current_generation()
            jobs = [webhook_job(config, campaign, p, generation) for p in payloads]
            jobs = [job for job in jobs if job is not None]
            self.sender.enqueue(jobs, config.webhook_queue_limit)
        return {"processed": [p["lead_id"] for p in payloads], "queued": len(jobs),
                "webhook_url": jobs[0].masked if jobs else None}

    def auto_process_lead(self, job):
        """Run a process job from auto_process (in the sender's thread)."""
        settings = job.settings
        with self.lock:
            if job.generation != self.sender.current_generation():
                return
            lead = self.leads.get(job.campaign, {}).get(job.key)
            # a lead disabled, deleted or processed meanwhile is not processed
            if (lead is None or lead["state"] != "created"
                    or job.key in self.outcomes.get(job.campaign, {})):
                return
            payload = self._process(job.campaign, [job.key], settings["outcome"],
                                    settings["lead_responses"], float(math.floor(time.time())),
                                    None)[0]
            deliver = webhook_job(self.config, job.campaign, payload, job.generation)
            if deliver is not None and not self.sender.enqueue(
                    [deliver], self.config.webhook_queue_limit):
                self.sender.record_dropped(deliver, "queue full: not sent")

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
            answer = LEAD_OPERATIONS[endpoint](leads, campaign, body, state.config)
            if endpoint == "create" and req.generation == state.generation:
                state.note_created(campaign, list(dict.fromkeys(extract_lead_ids(body))))
            return answer
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


def ctl_process(state, query, body):
    return json_answer(200, state.process_leads({} if body is None else body))


def ctl_webhooks(state, query, body):
    try:
        since = int(query.get("since", "0"))
    except ValueError:
        raise ValueError("since must be an integer") from None
    return json_answer(200, state.sender.status(since))


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
    "/process": {"POST": ctl_process},
    "/webhooks": {"GET": ctl_webhooks},
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
    POST process                 {"campaign", "lead_ids"?, "outcome"?, "lead_responses"?,
                                 "processed_at"?, "latest_recording_url"?}: the leads (default:
                                 every created lead not processed yet) are processed, their
                                 outcomes stored and their webhooks queued; answers
                                 {"processed": [lead ids], "queued": N, "webhook_url": masked}
    GET  webhooks[?since=SEQ]    {"pending": deliveries not finished, "scheduled": auto_process
                                 jobs not due yet, "attempts": attempt records with seq > SEQ}
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


def webhook_url_arg(text):
    try:
        return check_webhook_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def campaign_webhook_url(text):
    campaign, sep, url = text.partition("=")
    if not sep or not CAMPAIGN_RE.fullmatch(campaign):
        raise argparse.ArgumentTypeError("expected CAMPAIGN=URL, got %r" % text)
    return campaign, webhook_url_arg(url)


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
    hooks = parser.add_argument_group("lead-processed webhooks (to 127.0.0.1, localhost, [::1] only)")
    hooks.add_argument("--webhook-url", type=webhook_url_arg, metavar="URL",
                       help="where to POST webhooks; {campaign} is replaced by the campaign id")
    hooks.add_argument("--campaign-webhook-url", action="append", default=[],
                       type=campaign_webhook_url, metavar="CAMPAIGN=URL",
                       help="a webhook URL for one campaign, instead of --webhook-url (repeatable)")
    hooks.add_argument("--webhook-attempts", type=positive(int), default=5,
                       help="attempts per webhook, the first included (default 5, at most 20)")
    hooks.add_argument("--webhook-retry-base", type=positive(float), default=1.0, metavar="SECONDS",
                       help="wait before the first retry, doubled for each next one (default 1)")
    hooks.add_argument("--webhook-retry-max", type=positive(float), default=30.0, metavar="SECONDS",
                       help="longest wait between attempts (default 30)")
    hooks.add_argument("--webhook-timeout", type=positive(float), default=10.0, metavar="SECONDS",
                       help="per-attempt timeout (default 10)")
    hooks.add_argument("--webhook-queue-limit", type=positive(int), default=1000,
                       help="webhooks and scheduled processing that may wait at once (default 1000)")
    hooks.add_argument("--auto-process", type=float, metavar="SECONDS",
                       help="process every created lead this many seconds after its create")
    hooks.add_argument("--auto-outcome", default=DEFAULT_OUTCOME, metavar="TEXT",
                       help="lead_outcome of leads processed by --auto-process (default %r)"
                       % DEFAULT_OUTCOME)
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
    try:
        config.apply({
            "webhook_url": args.webhook_url,
            "webhook_urls": dict(args.campaign_webhook_url),
            "webhook_attempts": args.webhook_attempts,
            "webhook_retry_base": args.webhook_retry_base,
            "webhook_retry_max": args.webhook_retry_max,
            "webhook_timeout": args.webhook_timeout,
            "webhook_queue_limit": args.webhook_queue_limit,
            "auto_process": None if args.auto_process is None else
            {"delay": args.auto_process, "outcome": args.auto_outcome},
        })
    except ValueError as error:
        print("api_double: %s" % error, file=sys.stderr)
        return 2
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
    state.sender.start()
    if args.port_file:
        write_port_file(args.port_file, server.server_address[1])

    reason = wait_for_stop(stop, args.max_lifetime, args.parent_pid)
    if reason:
        print("api_double: %s, exiting" % reason, file=sys.stderr)
    state.sender.stop()  # cuts off an attempt in flight; waits at most a second
    server.shutdown()
    server.server_close()
    state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
