"""Storage credentials from Airflow connections, so s3:// roots need no keys in config."""

from __future__ import annotations

import os


def s3_storage_options(conn_id: str | None = None) -> dict:
    """fsspec/s3fs options from the Airflow AWS connection (default: $DANQING_AWS_CONN_ID or aws_default)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=conn_id or os.environ.get("DANQING_AWS_CONN_ID", "aws_default"))
    creds = hook.get_credentials()
    from danqing.redact import register

    register(creds.secret_key, creds.token)  # masked wherever they might turn up (an error, a log line)
    options = {"key": creds.access_key, "secret": creds.secret_key}
    if creds.token:
        options["token"] = creds.token
    endpoint = hook.conn_config.endpoint_url
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return options
