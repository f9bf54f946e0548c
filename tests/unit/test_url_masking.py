"""Warehouse and state-store URLs are printed and logged with their credentials masked: the
password of the URL's user, and parameters that hold a password, token, key or secret, in a
query string or a ``;`` list. The shapes below are the ones docs/deploy.md tells people to use."""

from __future__ import annotations

import pytest

from closeloop.errors import redact
from closeloop.settings import mask_url

SHAPES = [
    pytest.param(
        "sc://spark.internal:15002/;token=Zm9vYmFy;database=cs",
        "sc://spark.internal:15002/;token=***;database=cs",
        id="spark-connect",
    ),
    pytest.param(
        "sc://dbc-a1b2c3d4-e5f6.cloud.databricks.com:443/;token=dapi0123456789abcdef-2;"
        "x-databricks-cluster-id=0412-150235-abcd1234;user_id=ada",
        "sc://dbc-a1b2c3d4-e5f6.cloud.databricks.com:443/;token=***;"
        "x-databricks-cluster-id=0412-150235-abcd1234;user_id=ada",
        id="databricks-connect",
    ),
    pytest.param(
        "sc://dbc-a1b2.cloud.databricks.com:443/;use_ssl=true;access_token=dapiXYZ;session_id=7",
        "sc://dbc-a1b2.cloud.databricks.com:443/;use_ssl=true;access_token=***;session_id=7",
        id="databricks-access-token",
    ),
    pytest.param(
        "pyspark:///data/wh?master=local[2]&database=cs&spark.hadoop.fs.s3a.access.key=AKIAX"
        "&spark.hadoop.fs.s3a.secret.key=wJalr/K7MDENG",
        "pyspark:///data/wh?master=local[2]&database=cs&spark.hadoop.fs.s3a.access.key=***"
        "&spark.hadoop.fs.s3a.secret.key=***",
        id="pyspark-s3-keys",
    ),
    pytest.param(
        "postgresql://closeloop:s3cr@t:pw@db.internal:5432/cs?sslmode=require",
        "postgresql://closeloop:***@db.internal:5432/cs?sslmode=require",
        id="postgres-userinfo",
    ),
    pytest.param(
        "postgres://db.internal/cs?user=closeloop&password=s3cret&application_name=cl",
        "postgres://db.internal/cs?user=closeloop&password=***&application_name=cl",
        id="postgres-query-password",
    ),
    pytest.param(
        "postgresql+psycopg://closeloop@db.internal/cs?sslmode=require&PASSWORD=x",
        "postgresql+psycopg://closeloop@db.internal/cs?sslmode=require&PASSWORD=***",
        id="postgres-query-case",
    ),
    pytest.param(
        "snowflake://ada:Sn0w!fl@ke@xy12345.eu-west-1/analytics/public?warehouse=compute_wh&role=cs",
        "snowflake://ada:***@xy12345.eu-west-1/analytics/public?warehouse=compute_wh&role=cs",
        id="snowflake",
    ),
    pytest.param(
        "snowflake://ada@xy12345/analytics/public?authenticator=snowflake_jwt"
        "&private_key_file=/keys/ada.p8&private_key_file_pwd=k3y",
        "snowflake://ada@xy12345/analytics/public?authenticator=snowflake_jwt"
        "&private_key_file=/keys/ada.p8&private_key_file_pwd=***",
        id="snowflake-key-pair",
    ),
    pytest.param(
        "bigquery://my-project/analytics?location=EU",
        "bigquery://my-project/analytics?location=EU",
        id="bigquery",
    ),
    pytest.param(
        "bigquery://my-project/analytics?credentials_info=eyJ0eXBlIjoic2VydmljZV9hY2NvdW50In0",
        "bigquery://my-project/analytics?credentials_info=***",
        id="bigquery-credentials",
    ),
    pytest.param(
        "duckdb:///home/ada/cs/warehouse.duckdb",
        "duckdb:///home/ada/cs/warehouse.duckdb",
        id="duckdb",
    ),
    pytest.param("sqlite:///state.sqlite", "sqlite:///state.sqlite", id="sqlite"),
]


@pytest.mark.parametrize(("url", "masked"), SHAPES)
def test_a_url_is_printed_without_its_credentials(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_url(masked) == masked  # masking twice changes nothing


@pytest.mark.parametrize(("url", "masked"), SHAPES)
def test_an_error_message_quoting_a_url_is_masked(url: str, masked: str) -> None:
    message = f"cannot connect to the warehouse at {url!r}: connection refused"
    assert redact(message) == f"cannot connect to the warehouse at {masked!r}: connection refused"


def test_empty_values_and_ordinary_parameters_are_left_alone() -> None:
    url = "sc://host:443/;token=;database=cs;session_id=9"
    assert mask_url(url) == url
    assert redact("a message without a URL; token=abc is not a parameter") == (
        "a message without a URL; token=abc is not a parameter"
    )
