SELECT
  "t13"."account_id",
  "t13"."entered_at",
  "t13"."completed_at",
  "t13"."exited_at",
  "t13"."objective_0",
  "t13"."objective_1",
  "t13"."marker_0",
  (
    "t13"."entered_at" IS NOT NULL
  ) AND (
    "t13"."exited_at" IS NULL
  ) AS "in_stage",
  (
    "t13"."exited_at" IS NOT NULL
  )
  AND (
    (
      "t13"."completed_at" IS NULL
    )
    OR (
      "t13"."completed_at" > "t13"."exited_at"
    )
  ) AS "exited_incomplete"
FROM (
  SELECT
    "t12"."account_id",
    CASE
      WHEN "t12"."entered_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
      THEN "t12"."entered_at"
      ELSE CAST(NULL AS TIMESTAMP)
    END AS "entered_at",
    "t12"."completed_at",
    CASE
      WHEN "t12"."exited_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
      THEN "t12"."exited_at"
      ELSE CAST(NULL AS TIMESTAMP)
    END AS "exited_at",
    "t12"."objective_0",
    "t12"."objective_1",
    "t12"."marker_0"
  FROM (
    SELECT
      "t11"."account_id",
      CASE
        WHEN COALESCE(
          (
            "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
          )
          AND (
            "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
          ),
          FALSE
        )
        THEN "t11"."created_at"
        ELSE CAST(NULL AS TIMESTAMP)
      END AS "entered_at",
      CASE
        WHEN CASE
          WHEN CASE
            WHEN COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE)
            THEN GREATEST(
              COALESCE("t11"."_d3", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
              CASE
                WHEN COALESCE(
                  (
                    "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                  )
                  AND (
                    "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                  ),
                  FALSE
                )
                THEN "t11"."created_at"
                ELSE CAST(NULL AS TIMESTAMP)
              END
            )
            ELSE NULL
          END IS NULL
          THEN CAST(NULL AS TIMESTAMP)
          ELSE CASE
            WHEN CASE
              WHEN COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE)
              THEN GREATEST(
                COALESCE("t11"."_d1", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                CASE
                  WHEN COALESCE(
                    (
                      "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                    )
                    AND (
                      "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                    ),
                    FALSE
                  )
                  THEN "t11"."created_at"
                  ELSE CAST(NULL AS TIMESTAMP)
                END
              )
              ELSE NULL
            END IS NULL
            THEN CAST(NULL AS TIMESTAMP)
            ELSE GREATEST(
              CASE
                WHEN COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE)
                THEN GREATEST(
                  COALESCE("t11"."_d1", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  CASE
                    WHEN COALESCE(
                      (
                        "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    )
                    THEN "t11"."created_at"
                    ELSE CAST(NULL AS TIMESTAMP)
                  END
                )
                ELSE NULL
              END,
              CASE
                WHEN COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE)
                THEN GREATEST(
                  COALESCE("t11"."_d3", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  CASE
                    WHEN COALESCE(
                      (
                        "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    )
                    THEN "t11"."created_at"
                    ELSE CAST(NULL AS TIMESTAMP)
                  END
                )
                ELSE NULL
              END
            )
          END
        END <= (
          CASE
            WHEN COALESCE(
              (
                "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
              )
              AND (
                "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
              ),
              FALSE
            )
            THEN "t11"."created_at"
            ELSE CAST(NULL AS TIMESTAMP)
          END + INTERVAL '864000 SECOND'
        )
        THEN CASE
          WHEN CASE
            WHEN COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE)
            THEN GREATEST(
              COALESCE("t11"."_d3", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
              CASE
                WHEN COALESCE(
                  (
                    "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                  )
                  AND (
                    "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                  ),
                  FALSE
                )
                THEN "t11"."created_at"
                ELSE CAST(NULL AS TIMESTAMP)
              END
            )
            ELSE NULL
          END IS NULL
          THEN CAST(NULL AS TIMESTAMP)
          ELSE CASE
            WHEN CASE
              WHEN COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE)
              THEN GREATEST(
                COALESCE("t11"."_d1", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                CASE
                  WHEN COALESCE(
                    (
                      "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                    )
                    AND (
                      "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                    ),
                    FALSE
                  )
                  THEN "t11"."created_at"
                  ELSE CAST(NULL AS TIMESTAMP)
                END
              )
              ELSE NULL
            END IS NULL
            THEN CAST(NULL AS TIMESTAMP)
            ELSE GREATEST(
              CASE
                WHEN COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE)
                THEN GREATEST(
                  COALESCE("t11"."_d1", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  CASE
                    WHEN COALESCE(
                      (
                        "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    )
                    THEN "t11"."created_at"
                    ELSE CAST(NULL AS TIMESTAMP)
                  END
                )
                ELSE NULL
              END,
              CASE
                WHEN COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE)
                THEN GREATEST(
                  COALESCE("t11"."_d3", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  CASE
                    WHEN COALESCE(
                      (
                        "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    )
                    THEN "t11"."created_at"
                    ELSE CAST(NULL AS TIMESTAMP)
                  END
                )
                ELSE NULL
              END
            )
          END
        END
        ELSE NULL
      END AS "completed_at",
      LEAST(
        CASE
          WHEN COALESCE(
            (
              "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
            )
            AND (
              "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
            ),
            FALSE
          )
          THEN "t11"."created_at"
          ELSE CAST(NULL AS TIMESTAMP)
        END + INTERVAL '864000 SECOND',
        CASE
          WHEN CASE
            WHEN CASE
              WHEN COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE)
              THEN GREATEST(
                COALESCE("t11"."_d3", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                CASE
                  WHEN COALESCE(
                    (
                      "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                    )
                    AND (
                      "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                    ),
                    FALSE
                  )
                  THEN "t11"."created_at"
                  ELSE CAST(NULL AS TIMESTAMP)
                END
              )
              ELSE NULL
            END IS NULL
            THEN CAST(NULL AS TIMESTAMP)
            ELSE CASE
              WHEN CASE
                WHEN COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE)
                THEN GREATEST(
                  COALESCE("t11"."_d1", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  CASE
                    WHEN COALESCE(
                      (
                        "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    )
                    THEN "t11"."created_at"
                    ELSE CAST(NULL AS TIMESTAMP)
                  END
                )
                ELSE NULL
              END IS NULL
              THEN CAST(NULL AS TIMESTAMP)
              ELSE GREATEST(
                CASE
                  WHEN COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE)
                  THEN GREATEST(
                    COALESCE("t11"."_d1", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                    CASE
                      WHEN COALESCE(
                        (
                          "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                        )
                        AND (
                          "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                        ),
                        FALSE
                      )
                      THEN "t11"."created_at"
                      ELSE CAST(NULL AS TIMESTAMP)
                    END
                  )
                  ELSE NULL
                END,
                CASE
                  WHEN COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE)
                  THEN GREATEST(
                    COALESCE("t11"."_d3", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                    CASE
                      WHEN COALESCE(
                        (
                          "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                        )
                        AND (
                          "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                        ),
                        FALSE
                      )
                      THEN "t11"."created_at"
                      ELSE CAST(NULL AS TIMESTAMP)
                    END
                  )
                  ELSE NULL
                END
              )
            END
          END <= (
            CASE
              WHEN COALESCE(
                (
                  "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                )
                AND (
                  "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                ),
                FALSE
              )
              THEN "t11"."created_at"
              ELSE CAST(NULL AS TIMESTAMP)
            END + INTERVAL '864000 SECOND'
          )
          THEN CASE
            WHEN CASE
              WHEN COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE)
              THEN GREATEST(
                COALESCE("t11"."_d3", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                CASE
                  WHEN COALESCE(
                    (
                      "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                    )
                    AND (
                      "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                    ),
                    FALSE
                  )
                  THEN "t11"."created_at"
                  ELSE CAST(NULL AS TIMESTAMP)
                END
              )
              ELSE NULL
            END IS NULL
            THEN CAST(NULL AS TIMESTAMP)
            ELSE CASE
              WHEN CASE
                WHEN COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE)
                THEN GREATEST(
                  COALESCE("t11"."_d1", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  CASE
                    WHEN COALESCE(
                      (
                        "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    )
                    THEN "t11"."created_at"
                    ELSE CAST(NULL AS TIMESTAMP)
                  END
                )
                ELSE NULL
              END IS NULL
              THEN CAST(NULL AS TIMESTAMP)
              ELSE GREATEST(
                CASE
                  WHEN COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE)
                  THEN GREATEST(
                    COALESCE("t11"."_d1", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                    CASE
                      WHEN COALESCE(
                        (
                          "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                        )
                        AND (
                          "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                        ),
                        FALSE
                      )
                      THEN "t11"."created_at"
                      ELSE CAST(NULL AS TIMESTAMP)
                    END
                  )
                  ELSE NULL
                END,
                CASE
                  WHEN COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE)
                  THEN GREATEST(
                    COALESCE("t11"."_d3", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                    CASE
                      WHEN COALESCE(
                        (
                          "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                        )
                        AND (
                          "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                        ),
                        FALSE
                      )
                      THEN "t11"."created_at"
                      ELSE CAST(NULL AS TIMESTAMP)
                    END
                  )
                  ELSE NULL
                END
              )
            END
          END
          ELSE NULL
        END
      ) AS "exited_at",
      CASE
        WHEN COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE)
        THEN GREATEST(
          COALESCE("t11"."_d1", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
          CASE
            WHEN COALESCE(
              (
                "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
              )
              AND (
                "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
              ),
              FALSE
            )
            THEN "t11"."created_at"
            ELSE CAST(NULL AS TIMESTAMP)
          END
        )
        ELSE NULL
      END AS "objective_0",
      CASE
        WHEN COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE)
        THEN GREATEST(
          COALESCE("t11"."_d3", CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
          CASE
            WHEN COALESCE(
              (
                "t11"."created_at" > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
              )
              AND (
                "t11"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
              ),
              FALSE
            )
            THEN "t11"."created_at"
            ELSE CAST(NULL AS TIMESTAMP)
          END
        )
        ELSE NULL
      END AS "objective_1",
      COALESCE(COALESCE("t11"."_d4", 0) >= 1.0, FALSE) AS "marker_0"
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
        "t10"."_d3",
        "t8"."_d0",
        "t8"."_d1",
        "t8"."_d2",
        "t8"."_d4"
      FROM (
        SELECT
          *
        FROM "accounts" AS "t0"
        WHERE
          "t0"."created_at" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
      ) AS "t5"
      LEFT OUTER JOIN (
        SELECT
          "t7"."account_id",
          "t7"."timestamp" AS "_d3"
        FROM (
          SELECT
            "t4"."event_id",
            "t4"."account_id",
            "t4"."person_id",
            "t4"."name",
            "t4"."timestamp",
            "t4"."value",
            "t4"."properties",
            ROW_NUMBER() OVER (
              PARTITION BY "t4"."account_id"
              ORDER BY "t4"."timestamp" ASC, "t4"."event_id" ASC
              ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
            ) - 1 AS "_rank"
          FROM (
            SELECT
              *
            FROM "events" AS "t1"
            WHERE
              "t1"."timestamp" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
              AND "t1"."name" = 'login'
          ) AS "t4"
        ) AS "t7"
        WHERE
          "t7"."_rank" = 2
      ) AS "t10"
        ON "t5"."account_id" = "t10"."account_id"
      LEFT OUTER JOIN (
        SELECT
          "t3"."account_id",
          COUNT(*) FILTER(WHERE
            "t3"."name" = 'integration_connected') AS "_d0",
          MIN("t3"."timestamp") FILTER(WHERE
            "t3"."name" = 'integration_connected') AS "_d1",
          COUNT(*) FILTER(WHERE
            "t3"."name" = 'login') AS "_d2",
          COUNT(*) FILTER(WHERE
            (
              "t3"."name" = 'login'
            )
            AND (
              "t3"."timestamp" > CAST('2024-05-25T00:00:00' AS TIMESTAMP)
            )) AS "_d4"
        FROM (
          SELECT
            *
          FROM "events" AS "t1"
          WHERE
            "t1"."timestamp" <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
            AND "t1"."name" IN ('integration_connected', 'login')
        ) AS "t3"
        GROUP BY
          1
      ) AS "t8"
        ON "t5"."account_id" = "t8"."account_id"
    ) AS "t11"
  ) AS "t12"
) AS "t13"
