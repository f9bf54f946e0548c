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
    IFF(
      "t12"."entered_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0),
      "t12"."entered_at",
      CAST(NULL AS TIMESTAMP)
    ) AS "entered_at",
    "t12"."completed_at",
    IFF(
      "t12"."exited_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0),
      "t12"."exited_at",
      CAST(NULL AS TIMESTAMP)
    ) AS "exited_at",
    "t12"."objective_0",
    "t12"."objective_1",
    "t12"."marker_0"
  FROM (
    SELECT
      "t11"."account_id",
      IFF(
        COALESCE(
          (
            "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
          )
          AND (
            "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
          ),
          FALSE
        ),
        "t11"."created_at",
        CAST(NULL AS TIMESTAMP)
      ) AS "entered_at",
      IFF(
        IFF(
          IFF(
            COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE),
            GREATEST(
              COALESCE("t11"."_d3", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
              IFF(
                COALESCE(
                  (
                    "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                  )
                  AND (
                    "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                  ),
                  FALSE
                ),
                "t11"."created_at",
                CAST(NULL AS TIMESTAMP)
              )
            ),
            NULL
          ) IS NULL,
          CAST(NULL AS TIMESTAMP),
          IFF(
            IFF(
              COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE),
              GREATEST(
                COALESCE("t11"."_d1", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                IFF(
                  COALESCE(
                    (
                      "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                    )
                    AND (
                      "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                    ),
                    FALSE
                  ),
                  "t11"."created_at",
                  CAST(NULL AS TIMESTAMP)
                )
              ),
              NULL
            ) IS NULL,
            CAST(NULL AS TIMESTAMP),
            GREATEST(
              IFF(
                COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE),
                GREATEST(
                  COALESCE("t11"."_d1", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                  IFF(
                    COALESCE(
                      (
                        "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                      )
                      AND (
                        "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                      ),
                      FALSE
                    ),
                    "t11"."created_at",
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              ),
              IFF(
                COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE),
                GREATEST(
                  COALESCE("t11"."_d3", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                  IFF(
                    COALESCE(
                      (
                        "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                      )
                      AND (
                        "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                      ),
                      FALSE
                    ),
                    "t11"."created_at",
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              )
            )
          )
        ) <= DATEADD(
          SECOND,
          '864000',
          IFF(
            COALESCE(
              (
                "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
              )
              AND (
                "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
              ),
              FALSE
            ),
            "t11"."created_at",
            CAST(NULL AS TIMESTAMP)
          )
        ),
        IFF(
          IFF(
            COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE),
            GREATEST(
              COALESCE("t11"."_d3", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
              IFF(
                COALESCE(
                  (
                    "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                  )
                  AND (
                    "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                  ),
                  FALSE
                ),
                "t11"."created_at",
                CAST(NULL AS TIMESTAMP)
              )
            ),
            NULL
          ) IS NULL,
          CAST(NULL AS TIMESTAMP),
          IFF(
            IFF(
              COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE),
              GREATEST(
                COALESCE("t11"."_d1", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                IFF(
                  COALESCE(
                    (
                      "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                    )
                    AND (
                      "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                    ),
                    FALSE
                  ),
                  "t11"."created_at",
                  CAST(NULL AS TIMESTAMP)
                )
              ),
              NULL
            ) IS NULL,
            CAST(NULL AS TIMESTAMP),
            GREATEST(
              IFF(
                COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE),
                GREATEST(
                  COALESCE("t11"."_d1", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                  IFF(
                    COALESCE(
                      (
                        "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                      )
                      AND (
                        "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                      ),
                      FALSE
                    ),
                    "t11"."created_at",
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              ),
              IFF(
                COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE),
                GREATEST(
                  COALESCE("t11"."_d3", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                  IFF(
                    COALESCE(
                      (
                        "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                      )
                      AND (
                        "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                      ),
                      FALSE
                    ),
                    "t11"."created_at",
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              )
            )
          )
        ),
        NULL
      ) AS "completed_at",
      LEAST(
        DATEADD(
          SECOND,
          '864000',
          IFF(
            COALESCE(
              (
                "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
              )
              AND (
                "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
              ),
              FALSE
            ),
            "t11"."created_at",
            CAST(NULL AS TIMESTAMP)
          )
        ),
        IFF(
          IFF(
            IFF(
              COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE),
              GREATEST(
                COALESCE("t11"."_d3", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                IFF(
                  COALESCE(
                    (
                      "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                    )
                    AND (
                      "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                    ),
                    FALSE
                  ),
                  "t11"."created_at",
                  CAST(NULL AS TIMESTAMP)
                )
              ),
              NULL
            ) IS NULL,
            CAST(NULL AS TIMESTAMP),
            IFF(
              IFF(
                COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE),
                GREATEST(
                  COALESCE("t11"."_d1", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                  IFF(
                    COALESCE(
                      (
                        "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                      )
                      AND (
                        "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                      ),
                      FALSE
                    ),
                    "t11"."created_at",
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              ) IS NULL,
              CAST(NULL AS TIMESTAMP),
              GREATEST(
                IFF(
                  COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE),
                  GREATEST(
                    COALESCE("t11"."_d1", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                    IFF(
                      COALESCE(
                        (
                          "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                        )
                        AND (
                          "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                        ),
                        FALSE
                      ),
                      "t11"."created_at",
                      CAST(NULL AS TIMESTAMP)
                    )
                  ),
                  NULL
                ),
                IFF(
                  COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE),
                  GREATEST(
                    COALESCE("t11"."_d3", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                    IFF(
                      COALESCE(
                        (
                          "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                        )
                        AND (
                          "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                        ),
                        FALSE
                      ),
                      "t11"."created_at",
                      CAST(NULL AS TIMESTAMP)
                    )
                  ),
                  NULL
                )
              )
            )
          ) <= DATEADD(
            SECOND,
            '864000',
            IFF(
              COALESCE(
                (
                  "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                )
                AND (
                  "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                ),
                FALSE
              ),
              "t11"."created_at",
              CAST(NULL AS TIMESTAMP)
            )
          ),
          IFF(
            IFF(
              COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE),
              GREATEST(
                COALESCE("t11"."_d3", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                IFF(
                  COALESCE(
                    (
                      "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                    )
                    AND (
                      "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                    ),
                    FALSE
                  ),
                  "t11"."created_at",
                  CAST(NULL AS TIMESTAMP)
                )
              ),
              NULL
            ) IS NULL,
            CAST(NULL AS TIMESTAMP),
            IFF(
              IFF(
                COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE),
                GREATEST(
                  COALESCE("t11"."_d1", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                  IFF(
                    COALESCE(
                      (
                        "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                      )
                      AND (
                        "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                      ),
                      FALSE
                    ),
                    "t11"."created_at",
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              ) IS NULL,
              CAST(NULL AS TIMESTAMP),
              GREATEST(
                IFF(
                  COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE),
                  GREATEST(
                    COALESCE("t11"."_d1", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                    IFF(
                      COALESCE(
                        (
                          "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                        )
                        AND (
                          "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                        ),
                        FALSE
                      ),
                      "t11"."created_at",
                      CAST(NULL AS TIMESTAMP)
                    )
                  ),
                  NULL
                ),
                IFF(
                  COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE),
                  GREATEST(
                    COALESCE("t11"."_d3", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
                    IFF(
                      COALESCE(
                        (
                          "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
                        )
                        AND (
                          "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
                        ),
                        FALSE
                      ),
                      "t11"."created_at",
                      CAST(NULL AS TIMESTAMP)
                    )
                  ),
                  NULL
                )
              )
            )
          ),
          NULL
        )
      ) AS "exited_at",
      IFF(
        COALESCE(COALESCE("t11"."_d0", 0) >= 1.0, FALSE),
        GREATEST(
          COALESCE("t11"."_d1", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
          IFF(
            COALESCE(
              (
                "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
              )
              AND (
                "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
              ),
              FALSE
            ),
            "t11"."created_at",
            CAST(NULL AS TIMESTAMP)
          )
        ),
        NULL
      ) AS "objective_0",
      IFF(
        COALESCE(COALESCE("t11"."_d2", 0) >= 3.0, FALSE),
        GREATEST(
          COALESCE("t11"."_d3", TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)),
          IFF(
            COALESCE(
              (
                "t11"."created_at" > TIMESTAMP_FROM_PARTS(2024, 2, 2, 0, 0, 0, 0)
              )
              AND (
                "t11"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
              ),
              FALSE
            ),
            "t11"."created_at",
            CAST(NULL AS TIMESTAMP)
          )
        ),
        NULL
      ) AS "objective_1",
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
          "t0"."created_at" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
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
            ROW_NUMBER() OVER (PARTITION BY "t4"."account_id" ORDER BY "t4"."timestamp" ASC, "t4"."event_id" ASC) - 1 AS "_rank"
          FROM (
            SELECT
              *
            FROM "events" AS "t1"
            WHERE
              "t1"."timestamp" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
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
          COUNT_IF("t3"."name" = 'integration_connected') AS "_d0",
          MIN(IFF("t3"."name" = 'integration_connected', "t3"."timestamp", NULL)) AS "_d1",
          COUNT_IF("t3"."name" = 'login') AS "_d2",
          COUNT_IF(
            (
              "t3"."name" = 'login'
            )
            AND (
              "t3"."timestamp" > TIMESTAMP_FROM_PARTS(2024, 5, 25, 0, 0, 0, 0)
            )
          ) AS "_d4"
        FROM (
          SELECT
            *
          FROM "events" AS "t1"
          WHERE
            "t1"."timestamp" <= TIMESTAMP_FROM_PARTS(2024, 6, 1, 0, 0, 0, 0)
            AND "t1"."name" IN ('integration_connected', 'login')
        ) AS "t3"
        GROUP BY
          1
      ) AS "t8"
        ON "t5"."account_id" = "t8"."account_id"
    ) AS "t11"
  ) AS "t12"
) AS "t13"
