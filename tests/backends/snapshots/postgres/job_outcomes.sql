SELECT
  "t5"."unit_id",
  "t5"."account_id",
  "t5"."arm",
  "t5"."entered_at",
  "t5"."goal_at",
  "t5"."exited_at",
  "t5"."exit_reason",
  "t3"."segment"
FROM (
  SELECT
    "t0"."enrollment_id" AS "unit_id",
    "t0"."account_id",
    "t0"."arm",
    "t0"."entered_at",
    CASE
      WHEN "t0"."completed_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
      THEN "t0"."completed_at"
      ELSE NULL
    END AS "goal_at",
    CASE
      WHEN "t0"."exited_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
      THEN "t0"."exited_at"
      ELSE NULL
    END AS "exited_at",
    CASE
      WHEN "t0"."exited_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
      THEN "t0"."exit_reason"
      ELSE NULL
    END AS "exit_reason"
  FROM "closeloop_enrollments" AS "t0"
  WHERE
    "t0"."job_name" = 'Conformance'
    AND "t0"."entered_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
) AS "t5"
LEFT OUTER JOIN (
  SELECT
    "t1"."account_id",
    "t1"."segment"
  FROM "accounts" AS "t1"
) AS "t3"
  ON "t5"."account_id" = "t3"."account_id"
