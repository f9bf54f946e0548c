SELECT DISTINCT
  "t13"."account_id"
FROM (
  SELECT
    "t5"."account_id",
    "t5"."name",
    "t5"."domain",
    "t5"."created_at",
    "t5"."segment",
    "t5"."plan",
    "t5"."industry",
    "t5"."employees",
    "t5"."region",
    "t5"."owner",
    "t5"."arr",
    "t5"."renewal_date",
    "t5"."properties",
    "t8"."_d0",
    "t9"."_d1",
    "t12"."_d2"
  FROM (
    SELECT
      *
    FROM "accounts" AS "t0"
    WHERE
      "t0"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
  ) AS "t5"
  LEFT OUTER JOIN (
    SELECT
      "t3"."account_id",
      COUNT(*) AS "_d0"
    FROM (
      SELECT
        *
      FROM "events" AS "t1"
      WHERE
        "t1"."timestamp" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
        AND "t1"."name" = 'integration_connected'
    ) AS "t3"
    GROUP BY
      1
  ) AS "t8"
    ON "t5"."account_id" = "t8"."account_id"
  LEFT OUTER JOIN (
    SELECT
      "t4"."account_id",
      COUNT(*) AS "_d1"
    FROM (
      SELECT
        *
      FROM "events" AS "t1"
      WHERE
        "t1"."timestamp" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
        AND "t1"."name" = 'login'
        AND "t1"."timestamp" > TIMESTAMP_FROM_PARTS(2024, 5, 25, 0, 0, 0, 0)
    ) AS "t4"
    GROUP BY
      1
  ) AS "t9"
    ON "t5"."account_id" = "t9"."account_id"
  LEFT OUTER JOIN (
    SELECT
      "t10"."account_id",
      COUNT(*) AS "_d2"
    FROM (
      SELECT
        *
      FROM "events" AS "t1"
      WHERE
        "t1"."timestamp" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
        AND "t1"."name" = 'invoice_paid'
        AND AS_VARCHAR(GET(CAST("t1"."properties" AS VARIANT), 'method')) = 'card'
    ) AS "t10"
    GROUP BY
      1
  ) AS "t12"
    ON "t5"."account_id" = "t12"."account_id"
) AS "t13"
WHERE
  "t13"."created_at" > TIMESTAMP_FROM_PARTS(2024, 5, 18, 0, 0, 0, 0)
  AND "t13"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
  AND COALESCE("t13"."_d0", 0) = 0.0
  AND "t13"."segment" IN ('self_serve', 'mid_market')
  AND NOT (
    COALESCE(COALESCE("t13"."_d1", 0) >= 1.0, FALSE)
  )
  AND COALESCE("t13"."_d2", 0) >= 1.0
