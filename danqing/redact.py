"""Mask credentials in anything that gets printed: log lines, errors, alerts, pod arguments.

Three kinds of secret are masked: the password of a URL (`postgresql://u:PASS@h/db`), query values
and JSON/dict values whose name says they are secret (`?token=...`, `"aws_secret_access_key": ...`),
the path of a webhook URL (Slack, Discord and the like carry their token there), and any value
registered with `register` (tokens read from connections or the environment).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"

# A name that says its value is a credential: token, api_key, secret, password, signature, X-Amz-Credential...
SECRET_NAME = re.compile(r"(?i)(token|secret|passw(or)?d|pwd|api[-_]?key|access[-_]?key|private[-_]?key|credential"
                         r"|signature|(^|[-_])sig($|[-_])|(^|[-_])key$|auth)")
# Env names read for secrets at startup; their values are masked wherever they appear.
SECRET_ENV = re.compile(r"(?i)(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY|WEBHOOK|CREDENTIAL)")

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s:/@?#]*):(?P<pw>[^\s/@?#]*)@")
_QUERY = re.compile(r"(?P<sep>[?&;])(?P<name>[^\s=&#;\"']+)=(?P<value>[^\s&#;\"']*)")
_PAIR = re.compile(r"(?P<name>[\"']?[A-Za-z0-9_.-]+[\"']?)(?P<eq>\s*[:=]\s*)(?P<q>[\"'])(?P<value>[^\"']*)(?P=q)")
# Webhook hosts whose URL path is itself the credential.
_WEBHOOK = re.compile(r"(?i)(?P<base>https?://(?:hooks\.slack\.com|(?:[a-z0-9-]+\.)?discord(?:app)?\.com/api/webhooks"
                      r"|[a-z0-9-]+\.webhook\.office\.com|outlook\.office\.com/webhook|events\.pagerduty\.com"
                      r"|oapi\.dingtalk\.com|open\.feishu\.cn/open-apis/bot|qyapi\.weixin\.qq\.com))(?P<path>/[^\s\"'<>]*)")

_secrets: set[str] = set()
_MIN_SECRET_LEN = 6  # shorter values would mask ordinary words


def register(*values: str | None) -> None:
    """Remember values that must never be printed (tokens, passwords), wherever they turn up."""
    for value in values:
        if isinstance(value, str) and len(value) >= _MIN_SECRET_LEN:
            _secrets.add(value)


def register_env(environ: dict[str, str] | None = None) -> None:
    """Register the values of environment variables whose names say they hold a secret."""
    for name, value in (environ if environ is not None else os.environ).items():
        if SECRET_ENV.search(name):
            register(value)
            register(*_url_passwords(value))


def _url_passwords(text: str) -> Iterable[str]:
    return (m.group("pw") for m in _USERINFO.finditer(text) if m.group("pw"))


def redact(text: object) -> str:
    """`text` (or its str) with every credential it holds replaced by ***."""
    s = text if isinstance(text, str) else str(text)
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in s:
            s = s.replace(secret, MASK)
    s = _WEBHOOK.sub(lambda m: f"{m.group('base')}/{MASK}", s)
    s = _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", s)
    s = _QUERY.sub(lambda m: f"{m.group('sep')}{m.group('name')}={MASK}" if SECRET_NAME.search(m.group("name"))
                   else m.group(0), s)
    return _PAIR.sub(lambda m: f"{m.group('name')}{m.group('eq')}{m.group('q')}{MASK}{m.group('q')}"
                     if SECRET_NAME.search(m.group("name").strip("\"'")) else m.group(0), s)


def redact_obj(obj: Any) -> Any:
    """A copy of a JSON-like value with secret-named keys masked and every string redacted."""
    if isinstance(obj, dict):
        return {k: MASK if isinstance(k, str) and SECRET_NAME.search(k) and v not in (None, "", {}, [])
                else redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact_obj(v) for v in obj)
    if isinstance(obj, str):
        return redact(obj)
    return obj


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's final message (args included) before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = redact(text), None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Redact every record that reaches `logger`'s handlers (default: the root logger's)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
