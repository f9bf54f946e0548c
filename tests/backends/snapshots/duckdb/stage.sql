SELECT
  "t17"."account_id",
  "t17"."entered_at",
  "t17"."completed_at",
  "t17"."exited_at",
  "t17"."objective_0",
  "t17"."objective_1",
  "t17"."marker_0",
  (
    "t17"."entered_at" IS NOT NULL
  ) AND (
    "t17"."exited_at" IS NULL
  ) AS "in_stage",
  (
    "t17"."exited_at" IS NOT NULL
  )
  AND (
    (
      "t17"."completed_at" IS NULL
    )
    OR (
      "t17"."completed_at" > "t17"."exited_at"
    )
  ) AS "exited_incomplete"
FROM (
  SELECT
    "t16"."account_id",
    CASE
      WHEN "t16"."entered_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
      THEN "t16"."entered_at"
      ELSE CAST(NULL AS TIMESTAMP)
    END AS "entered_at",
    "t16"."completed_at",
    CASE
      WHEN "t16"."exited_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
      THEN "t16"."exited_at"
      ELSE CAST(NULL AS TIMESTAMP)
    END AS "exited_at",
    "t16"."objective_0",
    "t16"."objective_1",
    "t16"."marker_0"
  FROM (
    SELECT
      "t15"."account_id",
      CASE
        WHEN COALESCE(
          (
            "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
          )
          AND (
            "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
          ),
          FALSE
        )
        THEN "t15"."created_at"
        ELSE CAST(NULL AS TIMESTAMP)
      END AS "entered_at",
      CASE
        WHEN CASE
          WHEN CASE
            WHEN COALESCE(COALESCE("t15"."_d2", 0) >= 3.0, FALSE)
            THEN GREATEST(
              COALESCE("t15"."_d3", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
              CASE
                WHEN COALESCE(
                  (
                    "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                  )
                  AND (
                    "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                  ),
                  FALSE
                )
                THEN "t15"."created_at"
                ELSE CAST(NULL AS TIMESTAMP)
              END
            )
            ELSE NULL
          END IS NULL
          THEN CAST(NULL AS TIMESTAMP)
          ELSE CASE
            WHEN CASE
              WHEN COALESCE(COALESCE("t15"."_d0", 0) >= 1.0, FALSE)
              THEN GREATEST(
                COALESCE("t15"."_d1", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                CASE
                  WHEN COALESCE(
                    (
                      "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                    )
                    AND (
                      "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                    ),
                    FALSE
                  )
                  THEN "t15"."created_at"
                  ELSE CAST(NULL AS TIMESTAMP)
                END
              )
              ELSE NULL
            END IS NULL
            THEN CAST(NULL AS TIMESTAMP)
            ELSE GREATEST(
              CASE
                WHEN COALESCE(COALESCE("t15"."_d0", 0) >= 1.0, FALSE)
                THEN GREATEST(
                  COALESCE("t15"."_d1", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                  CASE
                    WHEN COALESCE(
                      (
                        "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                      )
                      AND (
                        "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                      ),
                      FALSE
                    )
                    THEN "t15"."created_at"
                    ELSE CAST(NULL AS TIMESTAMP)
                  END
                )
                ELSE NULL
              END,
              CASE
                WHEN COALESCE(COALESCE("t15"."_d2", 0) >= 3.0, FALSE)
                THEN GREATEST(
                  COALESCE("t15"."_d3", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                  CASE
                    WHEN COALESCE(
                      (
                        "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                      )
                      AND (
                        "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                      ),
                      FALSE
                    )
                    THEN "t15"."created_at"
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
                "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
              )
              AND (
                "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
              ),
              FALSE
            )
            THEN "t15"."created_at"
            ELSE CAST(NULL AS TIMESTAMP)
          END + INTERVAL '864000' SECOND
        )
        THEN CASE
          WHEN CASE
            WHEN COALESCE(COALESCE("t15"."_d2", 0) >= 3.0, FALSE)
            THEN GREATEST(
              COALESCE("t15"."_d3", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
              CASE
                WHEN COALESCE(
                  (
                    "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                  )
                  AND (
                    "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                  ),
                  FALSE
                )
                THEN "t15"."created_at"
                ELSE CAST(NULL AS TIMESTAMP)
              END
            )
            ELSE NULL
          END IS NULL
          THEN CAST(NULL AS TIMESTAMP)
          ELSE CASE
            WHEN CASE
              WHEN COALESCE(COALESCE("t15"."_d0", 0) >= 1.0, FALSE)
              THEN GREATEST(
                COALESCE("t15"."_d1", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                CASE
                  WHEN COALESCE(
                    (
                      "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                    )
                    AND (
                      "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                    ),
                    FALSE
                  )
                  THEN "t15"."created_at"
                  ELSE CAST(NULL AS TIMESTAMP)
                END
              )
              ELSE NULL
            END IS NULL
            THEN CAST(NULL AS TIMESTAMP)
            ELSE GREATEST(
              CASE
                WHEN COALESCE(COALESCE("t15"."_d0", 0) >= 1.0, FALSE)
                THEN GREATEST(
                  COALESCE("t15"."_d1", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                  CASE
                    WHEN COALESCE(
                      (
                        "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                      )
                      AND (
                        "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                      ),
                      FALSE
                    )
                    THEN "t15"."created_at"
                    ELSE CAST(NULL AS TIMESTAMP)
                  END
                )
                ELSE NULL
              END,
              CASE
                WHEN COALESCE(COALESCE("t15"."_d2", 0) >= 3.0, FALSE)
                THEN GREATEST(
                  COALESCE("t15"."_d3", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                  CASE
                    WHEN COALESCE(
                      (
                        "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                      )
                      AND (
                        "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                      ),
                      FALSE
                    )
                    THEN "t15"."created_at"
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
              "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
            )
            AND (
              "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
            ),
            FALSE
          )
          THEN "t15"."created_at"
          ELSE CAST(NULL AS TIMESTAMP)
        END + INTERVAL '864000' SECOND,
        CASE
          WHEN CASE
            WHEN CASE
              WHEN COALESCE(COALESCE("t15"."_d2", 0) >= 3.0, FALSE)
              THEN GREATEST(
                COALESCE("t15"."_d3", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                CASE
                  WHEN COALESCE(
                    (
                      "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                    )
                    AND (
                      "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                    ),
                    FALSE
                  )
                  THEN "t15"."created_at"
                  ELSE CAST(NULL AS TIMESTAMP)
                END
              )
              ELSE NULL
            END IS NULL
            THEN CAST(NULL AS TIMESTAMP)
            ELSE CASE
              WHEN CASE
                WHEN COALESCE(COALESCE("t15"."_d0", 0) >= 1.0, FALSE)
                THEN GREATEST(
                  COALESCE("t15"."_d1", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                  CASE
                    WHEN COALESCE(
                      (
                        "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                      )
                      AND (
                        "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                      ),
                      FALSE
                    )
                    THEN "t15"."created_at"
                    ELSE CAST(NULL AS TIMESTAMP)
                  END
                )
                ELSE NULL
              END IS NULL
              THEN CAST(NULL AS TIMESTAMP)
              ELSE GREATEST(
                CASE
                  WHEN COALESCE(COALESCE("t15"."_d0", 0) >= 1.0, FALSE)
                  THEN GREATEST(
                    COALESCE("t15"."_d1", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                    CASE
                      WHEN COALESCE(
                        (
                          "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                        )
                        AND (
                          "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                        ),
                        FALSE
                      )
                      THEN "t15"."created_at"
                      ELSE CAST(NULL AS TIMESTAMP)
                    END
                  )
                  ELSE NULL
                END,
                CASE
                  WHEN COALESCE(COALESCE("t15"."_d2", 0) >= 3.0, FALSE)
                  THEN GREATEST(
                    COALESCE("t15"."_d3", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                    CASE
                      WHEN COALESCE(
                        (
                          "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                        )
                        AND (
                          "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                        ),
                        FALSE
                      )
                      THEN "t15"."created_at"
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
                  "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                )
                AND (
                  "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                ),
                FALSE
              )
              THEN "t15"."created_at"
              ELSE CAST(NULL AS TIMESTAMP)
            END + INTERVAL '864000' SECOND
          )
          THEN CASE
            WHEN CASE
              WHEN COALESCE(COALESCE("t15"."_d2", 0) >= 3.0, FALSE)
              THEN GREATEST(
                COALESCE("t15"."_d3", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                CASE
                  WHEN COALESCE(
                    (
                      "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                    )
                    AND (
                      "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                    ),
                    FALSE
                  )
                  THEN "t15"."created_at"
                  ELSE CAST(NULL AS TIMESTAMP)
                END
              )
              ELSE NULL
            END IS NULL
            THEN CAST(NULL AS TIMESTAMP)
            ELSE CASE
              WHEN CASE
                WHEN COALESCE(COALESCE("t15"."_d0", 0) >= 1.0, FALSE)
                THEN GREATEST(
                  COALESCE("t15"."_d1", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                  CASE
                    WHEN COALESCE(
                      (
                        "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                      )
                      AND (
                        "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                      ),
                      FALSE
                    )
                    THEN "t15"."created_at"
                    ELSE CAST(NULL AS TIMESTAMP)
                  END
                )
                ELSE NULL
              END IS NULL
              THEN CAST(NULL AS TIMESTAMP)
              ELSE GREATEST(
                CASE
                  WHEN COALESCE(COALESCE("t15"."_d0", 0) >= 1.0, FALSE)
                  THEN GREATEST(
                    COALESCE("t15"."_d1", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                    CASE
                      WHEN COALESCE(
                        (
                          "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                        )
                        AND (
                          "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                        ),
                        FALSE
                      )
                      THEN "t15"."created_at"
                      ELSE CAST(NULL AS TIMESTAMP)
                    END
                  )
                  ELSE NULL
                END,
                CASE
                  WHEN COALESCE(COALESCE("t15"."_d2", 0) >= 3.0, FALSE)
                  THEN GREATEST(
                    COALESCE("t15"."_d3", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
                    CASE
                      WHEN COALESCE(
                        (
                          "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
                        )
                        AND (
                          "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
                        ),
                        FALSE
                      )
                      THEN "t15"."created_at"
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
        WHEN COALESCE(COALESCE("t15"."_d0", 0) >= 1.0, FALSE)
        THEN GREATEST(
          COALESCE("t15"."_d1", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
          CASE
            WHEN COALESCE(
              (
                "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
              )
              AND (
                "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
              ),
              FALSE
            )
            THEN "t15"."created_at"
            ELSE CAST(NULL AS TIMESTAMP)
          END
        )
        ELSE NULL
      END AS "objective_0",
      CASE
        WHEN COALESCE(COALESCE("t15"."_d2", 0) >= 3.0, FALSE)
        THEN GREATEST(
          COALESCE("t15"."_d3", MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)),
          CASE
            WHEN COALESCE(
              (
                "t15"."created_at" > MAKE_TIMESTAMP(2024, 2, 2, 0, 0, 0.0)
              )
              AND (
                "t15"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
              ),
              FALSE
            )
            THEN "t15"."created_at"
            ELSE CAST(NULL AS TIMESTAMP)
          END
        )
        ELSE NULL
      END AS "objective_1",
      COALESCE(COALESCE("t15"."_d4", 0) >= 1.0, FALSE) AS "marker_0"
    FROM (
      SELECT
        "t6"."account_id",
        "t6"."name",
        "t6"."domain",
        "t6"."created_at",
        "t6"."segment",
        "t6"."plan",
        "t6"."industry",
        "t6"."employees",
        "t6"."region",
        "t6"."owner",
        "t6"."arr",
        "t6"."renewal_date",
        "t6"."properties",
        "t13"."_d1",
        "t14"."_d3",
        "t10"."_d0",
        "t10"."_d2",
        "t10"."_d4"
      FROM (
        SELECT
          *
        FROM "accounts" AS "t0"
        WHERE
          "t0"."created_at" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
      ) AS "t6"
      LEFT OUTER JOIN (
        SELECT
          "t8"."account_id",
          "t8"."timestamp" AS "_d1"
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
              "t1"."timestamp" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
              AND "t1"."name" = 'integration_connected'
          ) AS "t4"
        ) AS "t8"
        WHERE
          "t8"."_rank" = 0
      ) AS "t13"
        ON "t6"."account_id" = "t13"."account_id"
      LEFT OUTER JOIN (
        SELECT
          "t9"."account_id",
          "t9"."timestamp" AS "_d3"
        FROM (
          SELECT
            "t5"."event_id",
            "t5"."account_id",
            "t5"."person_id",
            "t5"."name",
            "t5"."timestamp",
            "t5"."value",
            "t5"."properties",
            ROW_NUMBER() OVER (
              PARTITION BY "t5"."account_id"
              ORDER BY "t5"."timestamp" ASC, "t5"."event_id" ASC
              ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
            ) - 1 AS "_rank"
          FROM (
            SELECT
              *
            FROM "events" AS "t1"
            WHERE
              "t1"."timestamp" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
              AND "t1"."name" = 'login'
          ) AS "t5"
        ) AS "t9"
        WHERE
          "t9"."_rank" = 2
      ) AS "t14"
        ON "t6"."account_id" = "t14"."account_id"
      LEFT OUTER JOIN (
        SELECT
          "t3"."account_id",
          COUNT(*) FILTER(WHERE
            "t3"."name" = 'integration_connected') AS "_d0",
          COUNT(*) FILTER(WHERE
            "t3"."name" = 'login') AS "_d2",
          COUNT(*) FILTER(WHERE
            (
              "t3"."name" = 'login'
            )
            AND (
              "t3"."timestamp" > MAKE_TIMESTAMP(2024, 5, 25, 0, 0, 0.0)
            )) AS "_d4"
        FROM (
          SELECT
            *
          FROM "events" AS "t1"
          WHERE
            "t1"."timestamp" <= MAKE_TIMESTAMP(2024, 6, 1, 0, 0, 0.0)
            AND "t1"."name" IN ('integration_connected', 'login')
        ) AS "t3"
        GROUP BY
          1
      ) AS "t10"
        ON "t6"."account_id" = "t10"."account_id"
    ) AS "t15"
  ) AS "t16"
) AS "t17"
