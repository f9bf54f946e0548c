SELECT DISTINCT
  "t16"."account_id"
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
    "t15"."_d0",
    "t12"."_d1"
  FROM (
    SELECT
      *
    FROM "accounts" AS "t0"
    WHERE
      "t0"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
  ) AS "t5"
  LEFT OUTER JOIN (
    SELECT
      "t13"."account_id",
      COUNT(*) AS "_d0"
    FROM (
      SELECT
        "t11"."account_id"
      FROM (
        SELECT
          "t8"."person_id",
          "t8"."account_id",
          "t8"."email",
          "t8"."name",
          "t8"."role",
          "t8"."created_at",
          "t8"."properties",
          "t6"."account__account_id",
          "t6"."account__name",
          "t6"."account__domain",
          "t6"."account__created_at",
          "t6"."account__segment",
          "t6"."account__plan",
          "t6"."account__industry",
          "t6"."account__employees",
          "t6"."account__region",
          "t6"."account__owner",
          "t6"."account__arr",
          "t6"."account__renewal_date",
          "t6"."account__properties"
        FROM (
          SELECT
            *
          FROM "people" AS "t2"
          WHERE
            (
              "t2"."created_at" IS NULL
            )
            OR (
              "t2"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
            )
        ) AS "t8"
        INNER JOIN (
          SELECT
            "t0"."account_id" AS "_account_key",
            "t0"."account_id" AS "account__account_id",
            "t0"."name" AS "account__name",
            "t0"."domain" AS "account__domain",
            "t0"."created_at" AS "account__created_at",
            "t0"."segment" AS "account__segment",
            "t0"."plan" AS "account__plan",
            "t0"."industry" AS "account__industry",
            "t0"."employees" AS "account__employees",
            "t0"."region" AS "account__region",
            "t0"."owner" AS "account__owner",
            "t0"."arr" AS "account__arr",
            "t0"."renewal_date" AS "account__renewal_date",
            "t0"."properties" AS "account__properties"
          FROM "accounts" AS "t0"
          WHERE
            "t0"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
        ) AS "t6"
          ON "t8"."account_id" = "t6"."_account_key"
      ) AS "t11"
      WHERE
        COALESCE("t11"."role" = 'admin', FALSE)
    ) AS "t13"
    GROUP BY
      1
  ) AS "t15"
    ON "t5"."account_id" = "t15"."account_id"
  LEFT OUTER JOIN (
    SELECT
      "t9"."account_id",
      SUM("t9"."value") AS "_d1"
    FROM (
      SELECT
        *
      FROM "events" AS "t1"
      WHERE
        "t1"."timestamp" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
        AND "t1"."name" = 'invoice_paid'
        AND CASE
          WHEN JSON_TYPE(CAST("t1"."properties" AS JSON) -> '$.method') = 'VARCHAR'
          THEN (
            CAST("t1"."properties" AS JSON) -> '$.method'
          ) ->> '$'
          ELSE NULL
        END = 'card'
    ) AS "t9"
    GROUP BY
      1
  ) AS "t12"
    ON "t5"."account_id" = "t12"."account_id"
) AS "t16"
WHERE
  COALESCE("t16"."_d0", 0) >= 1.0
  AND COALESCE("t16"."_d1", 0) > 100.0
  AND (
    (
      EPOCH(CAST(MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0) AS TIMESTAMP)) - EPOCH(CAST("t16"."created_at" AS TIMESTAMP))
    ) / 86400.0
  ) < 30.0
