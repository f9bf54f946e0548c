SELECT
  "t14"."account_id",
  GREATEST(
    LEAST(
      IFF(
        COALESCE(COALESCE("t14"."_d0", 0) >= 1.0, FALSE),
        COALESCE("t14"."_d2", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
        TIMESTAMP_FROM_PARTS(9999, 1, 1, 0, 0, 0, 0)
      ),
      IFF(
        COALESCE(COALESCE("t14"."_d1", 0) >= 3.0, FALSE),
        COALESCE("t14"."_d3", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
        TIMESTAMP_FROM_PARTS(9999, 1, 1, 0, 0, 0, 0)
      )
    ),
    "t14"."entered_at"
  ) AS "reached_at"
FROM (
  SELECT
    "t7"."account_id",
    "t7"."entered_at",
    "t8"."name",
    "t8"."domain",
    "t8"."created_at",
    "t8"."segment",
    "t8"."plan",
    "t8"."industry",
    "t8"."employees",
    "t8"."region",
    "t8"."owner",
    "t8"."arr",
    "t8"."renewal_date",
    "t8"."properties",
    "t13"."_d3",
    "t10"."_d0",
    "t10"."_d1",
    "t10"."_d2"
  FROM (
    SELECT
      "t0"."account_id",
      "t0"."entered_at"
    FROM "closeloop_enrollments" AS "t0"
    WHERE
      "t0"."job_name" = 'Conformance'
  ) AS "t7"
  INNER JOIN (
    SELECT
      *
    FROM "accounts" AS "t1"
    WHERE
      "t1"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
  ) AS "t8"
    ON "t7"."account_id" = "t8"."account_id"
  LEFT OUTER JOIN (
    SELECT
      "t11"."account_id",
      "t11"."timestamp" AS "_d3"
    FROM (
      SELECT
        "t6"."event_id",
        "t6"."account_id",
        "t6"."person_id",
        "t6"."name",
        "t6"."timestamp",
        "t6"."value",
        "t6"."properties",
        ROW_NUMBER() OVER (PARTITION BY "t6"."account_id" ORDER BY "t6"."timestamp" ASC, "t6"."event_id" ASC) - 1 AS "_rank"
      FROM (
        SELECT
          *
        FROM "events" AS "t2"
        WHERE
          "t2"."timestamp" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
          AND "t2"."name" = 'login'
      ) AS "t6"
    ) AS "t11"
    WHERE
      "t11"."_rank" = 2
  ) AS "t13"
    ON "t7"."account_id" = "t13"."account_id"
  LEFT OUTER JOIN (
    SELECT
      "t5"."account_id",
      COUNT_IF("t5"."name" = 'integration_connected') AS "_d0",
      COUNT_IF("t5"."name" = 'login') AS "_d1",
      MIN(IFF("t5"."name" = 'integration_connected', "t5"."timestamp", NULL)) AS "_d2"
    FROM (
      SELECT
        *
      FROM "events" AS "t2"
      WHERE
        "t2"."timestamp" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
        AND "t2"."name" IN ('integration_connected', 'login')
    ) AS "t5"
    GROUP BY
      1
  ) AS "t10"
    ON "t7"."account_id" = "t10"."account_id"
) AS "t14"
WHERE
  (
    COALESCE("t14"."_d0", 0) >= 1.0
  ) OR (
    COALESCE("t14"."_d1", 0) >= 3.0
  )
