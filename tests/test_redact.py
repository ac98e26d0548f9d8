"""Redaction: credentials in URLs, named fields, webhook paths and registered values never get printed."""

from __future__ import annotations

import logging

import pytest

from danqing import redact

SECRET = "s3cr3t-Value-42"


@pytest.mark.parametrize(("text", "kept"), [
    (f"postgresql+psycopg2://danqing:{SECRET}@db:5432/lineage", "postgresql+psycopg2://danqing:***@db"),
    (f"https://hooks.slack.com/services/T0/B0/{SECRET}", "https://hooks.slack.com/***"),
    (f"https://cdn.example/x.jpg?a=1&access_token={SECRET}&b=2", "a=1&access_token=***&b=2"),
    (f"https://bucket.s3/k?X-Amz-Credential=AK/2026&X-Amz-Signature={SECRET}", "X-Amz-Signature=***"),
    (f'{{"key": "AKIA{SECRET}", "secret": "{SECRET}", "endpoint_url": "http://s3"}}', '"endpoint_url": "http://s3"'),
    (f"hf_token='{SECRET}'", "hf_token='***'"),
])
def test_secrets_are_masked_and_the_rest_is_kept(text, kept):
    out = redact.redact(text)
    assert SECRET not in out and kept in out


def test_ordinary_urls_and_text_are_unchanged():
    for text in ["https://img.example.cn/a.jpg?a=1&region=cn&timestamp=5", "extract 67 -> 51", "key_frame.png",
                 "s3://bucket/danqing/CC-MAIN-2025-47/score/00001.parquet"]:
        assert redact.redact(text) == text


def test_registered_and_env_values_are_masked_anywhere():
    redact.register("tok-registered-0001")
    redact.register_env({"HF_TOKEN": "hf_env_value_0002", "DANQING_ALERT_WEBHOOK": "https://relay/x/abc_0003",
                         "HOME": "/root/ordinary"})
    out = redact.redact("a tok-registered-0001 b hf_env_value_0002 c https://relay/x/abc_0003 /root/ordinary")
    assert "0001" not in out and "0002" not in out and "0003" not in out and "/root/ordinary" in out


def test_redact_obj_masks_secret_named_fields_recursively():
    obj = {"storage_options": {"key": "AKIA-XYZ-1", "secret": SECRET, "client_kwargs": {"endpoint_url": "http://s3"}},
           "lineage_url": f"postgresql://u:{SECRET}@h/db", "pod": {"env": {"HF_TOKEN": SECRET, "MODE": "gpu"}}}
    out = redact.redact_obj(obj)
    assert SECRET not in repr(out) and "AKIA-XYZ-1" not in repr(out)
    assert out["storage_options"]["client_kwargs"] == {"endpoint_url": "http://s3"}
    assert out["pod"]["env"]["MODE"] == "gpu"


def test_logging_filter_redacts_messages_args_and_tracebacks(caplog):
    log = logging.getLogger("danqing.test_redact")
    caplog.handler.addFilter(redact.RedactingFilter())
    url = f"https://hooks.slack.com/services/T0/B0/{SECRET}"
    log.error("could not post to %s", url)
    try:
        raise RuntimeError(f"connect failed: {url}")
    except RuntimeError:
        log.exception("alert failed")
    assert SECRET not in caplog.text and "hooks.slack.com/***" in caplog.text
