SELECT
  `t13`.`account_id`,
  `t13`.`entered_at`,
  `t13`.`completed_at`,
  `t13`.`exited_at`,
  `t13`.`objective_0`,
  `t13`.`objective_1`,
  `t13`.`marker_0`,
  (
    `t13`.`entered_at` IS NOT NULL
  ) AND (
    `t13`.`exited_at` IS NULL
  ) AS `in_stage`,
  (
    `t13`.`exited_at` IS NOT NULL
  )
  AND (
    (
      `t13`.`completed_at` IS NULL
    )
    OR (
      `t13`.`completed_at` > `t13`.`exited_at`
    )
  ) AS `exited_incomplete`
FROM (
  SELECT
    `t12`.`account_id`,
    IF(
      `t12`.`entered_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP),
      `t12`.`entered_at`,
      CAST(NULL AS TIMESTAMP)
    ) AS `entered_at`,
    `t12`.`completed_at`,
    IF(
      `t12`.`exited_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP),
      `t12`.`exited_at`,
      CAST(NULL AS TIMESTAMP)
    ) AS `exited_at`,
    `t12`.`objective_0`,
    `t12`.`objective_1`,
    `t12`.`marker_0`
  FROM (
    SELECT
      `t11`.`account_id`,
      IF(
        COALESCE(
          (
            `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
          )
          AND (
            `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
          ),
          FALSE
        ),
        `t11`.`created_at`,
        CAST(NULL AS TIMESTAMP)
      ) AS `entered_at`,
      IF(
        IF(
          IF(
            COALESCE(COALESCE(`t11`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
            GREATEST(
              COALESCE(`t11`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
              IF(
                COALESCE(
                  (
                    `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                  )
                  AND (
                    `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                  ),
                  FALSE
                ),
                `t11`.`created_at`,
                CAST(NULL AS TIMESTAMP)
              )
            ),
            NULL
          ) IS NULL,
          CAST(NULL AS TIMESTAMP),
          IF(
            IF(
              COALESCE(COALESCE(`t11`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
              GREATEST(
                COALESCE(`t11`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                IF(
                  COALESCE(
                    (
                      `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                    )
                    AND (
                      `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                    ),
                    FALSE
                  ),
                  `t11`.`created_at`,
                  CAST(NULL AS TIMESTAMP)
                )
              ),
              NULL
            ) IS NULL,
            CAST(NULL AS TIMESTAMP),
            GREATEST(
              IF(
                COALESCE(COALESCE(`t11`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
                GREATEST(
                  COALESCE(`t11`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  IF(
                    COALESCE(
                      (
                        `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    ),
                    `t11`.`created_at`,
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              ),
              IF(
                COALESCE(COALESCE(`t11`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
                GREATEST(
                  COALESCE(`t11`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  IF(
                    COALESCE(
                      (
                        `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    ),
                    `t11`.`created_at`,
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              )
            )
          )
        ) <= (
          IF(
            COALESCE(
              (
                `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
              )
              AND (
                `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
              ),
              FALSE
            ),
            `t11`.`created_at`,
            CAST(NULL AS TIMESTAMP)
          ) + INTERVAL '864000' SECOND
        ),
        IF(
          IF(
            COALESCE(COALESCE(`t11`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
            GREATEST(
              COALESCE(`t11`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
              IF(
                COALESCE(
                  (
                    `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                  )
                  AND (
                    `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                  ),
                  FALSE
                ),
                `t11`.`created_at`,
                CAST(NULL AS TIMESTAMP)
              )
            ),
            NULL
          ) IS NULL,
          CAST(NULL AS TIMESTAMP),
          IF(
            IF(
              COALESCE(COALESCE(`t11`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
              GREATEST(
                COALESCE(`t11`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                IF(
                  COALESCE(
                    (
                      `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                    )
                    AND (
                      `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                    ),
                    FALSE
                  ),
                  `t11`.`created_at`,
                  CAST(NULL AS TIMESTAMP)
                )
              ),
              NULL
            ) IS NULL,
            CAST(NULL AS TIMESTAMP),
            GREATEST(
              IF(
                COALESCE(COALESCE(`t11`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
                GREATEST(
                  COALESCE(`t11`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  IF(
                    COALESCE(
                      (
                        `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    ),
                    `t11`.`created_at`,
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              ),
              IF(
                COALESCE(COALESCE(`t11`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
                GREATEST(
                  COALESCE(`t11`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  IF(
                    COALESCE(
                      (
                        `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    ),
                    `t11`.`created_at`,
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              )
            )
          )
        ),
        NULL
      ) AS `completed_at`,
      LEAST(
        IF(
          COALESCE(
            (
              `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
            )
            AND (
              `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
            ),
            FALSE
          ),
          `t11`.`created_at`,
          CAST(NULL AS TIMESTAMP)
        ) + INTERVAL '864000' SECOND,
        IF(
          IF(
            IF(
              COALESCE(COALESCE(`t11`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
              GREATEST(
                COALESCE(`t11`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                IF(
                  COALESCE(
                    (
                      `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                    )
                    AND (
                      `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                    ),
                    FALSE
                  ),
                  `t11`.`created_at`,
                  CAST(NULL AS TIMESTAMP)
                )
              ),
              NULL
            ) IS NULL,
            CAST(NULL AS TIMESTAMP),
            IF(
              IF(
                COALESCE(COALESCE(`t11`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
                GREATEST(
                  COALESCE(`t11`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  IF(
                    COALESCE(
                      (
                        `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    ),
                    `t11`.`created_at`,
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              ) IS NULL,
              CAST(NULL AS TIMESTAMP),
              GREATEST(
                IF(
                  COALESCE(COALESCE(`t11`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
                  GREATEST(
                    COALESCE(`t11`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                    IF(
                      COALESCE(
                        (
                          `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                        )
                        AND (
                          `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                        ),
                        FALSE
                      ),
                      `t11`.`created_at`,
                      CAST(NULL AS TIMESTAMP)
                    )
                  ),
                  NULL
                ),
                IF(
                  COALESCE(COALESCE(`t11`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
                  GREATEST(
                    COALESCE(`t11`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                    IF(
                      COALESCE(
                        (
                          `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                        )
                        AND (
                          `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                        ),
                        FALSE
                      ),
                      `t11`.`created_at`,
                      CAST(NULL AS TIMESTAMP)
                    )
                  ),
                  NULL
                )
              )
            )
          ) <= (
            IF(
              COALESCE(
                (
                  `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                )
                AND (
                  `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                ),
                FALSE
              ),
              `t11`.`created_at`,
              CAST(NULL AS TIMESTAMP)
            ) + INTERVAL '864000' SECOND
          ),
          IF(
            IF(
              COALESCE(COALESCE(`t11`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
              GREATEST(
                COALESCE(`t11`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                IF(
                  COALESCE(
                    (
                      `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                    )
                    AND (
                      `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                    ),
                    FALSE
                  ),
                  `t11`.`created_at`,
                  CAST(NULL AS TIMESTAMP)
                )
              ),
              NULL
            ) IS NULL,
            CAST(NULL AS TIMESTAMP),
            IF(
              IF(
                COALESCE(COALESCE(`t11`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
                GREATEST(
                  COALESCE(`t11`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  IF(
                    COALESCE(
                      (
                        `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    ),
                    `t11`.`created_at`,
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              ) IS NULL,
              CAST(NULL AS TIMESTAMP),
              GREATEST(
                IF(
                  COALESCE(COALESCE(`t11`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
                  GREATEST(
                    COALESCE(`t11`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                    IF(
                      COALESCE(
                        (
                          `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                        )
                        AND (
                          `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                        ),
                        FALSE
                      ),
                      `t11`.`created_at`,
                      CAST(NULL AS TIMESTAMP)
                    )
                  ),
                  NULL
                ),
                IF(
                  COALESCE(COALESCE(`t11`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
                  GREATEST(
                    COALESCE(`t11`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                    IF(
                      COALESCE(
                        (
                          `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                        )
                        AND (
                          `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                        ),
                        FALSE
                      ),
                      `t11`.`created_at`,
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
      ) AS `exited_at`,
      IF(
        COALESCE(COALESCE(`t11`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
        GREATEST(
          COALESCE(`t11`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
          IF(
            COALESCE(
              (
                `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
              )
              AND (
                `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
              ),
              FALSE
            ),
            `t11`.`created_at`,
            CAST(NULL AS TIMESTAMP)
          )
        ),
        NULL
      ) AS `objective_0`,
      IF(
        COALESCE(COALESCE(`t11`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
        GREATEST(
          COALESCE(`t11`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
          IF(
            COALESCE(
              (
                `t11`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
              )
              AND (
                `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
              ),
              FALSE
            ),
            `t11`.`created_at`,
            CAST(NULL AS TIMESTAMP)
          )
        ),
        NULL
      ) AS `objective_1`,
      COALESCE(COALESCE(`t11`.`_d4`, 0) >= CAST(1.0 AS DOUBLE), FALSE) AS `marker_0`
    FROM (
      SELECT
        `t5`.`account_id`,
        `t5`.`name`,
        `t5`.`domain`,
        `t5`.`created_at`,
        `t5`.`segment`,
        `t5`.`plan`,
        `t5`.`industry`,
        `t5`.`employees`,
        `t5`.`region`,
        `t5`.`owner`,
        `t5`.`arr`,
        `t5`.`renewal_date`,
        `t5`.`properties`,
        `t10`.`_d3`,
        `t8`.`_d0`,
        `t8`.`_d1`,
        `t8`.`_d2`,
        `t8`.`_d4`
      FROM (
        SELECT
          *
        FROM `accounts` AS `t0`
        WHERE
          `t0`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
      ) AS `t5`
      LEFT OUTER JOIN (
        SELECT
          `t7`.`account_id`,
          `t7`.`timestamp` AS `_d3`
        FROM (
          SELECT
            `t4`.`event_id`,
            `t4`.`account_id`,
            `t4`.`person_id`,
            `t4`.`name`,
            `t4`.`timestamp`,
            `t4`.`value`,
            `t4`.`properties`,
            ROW_NUMBER() OVER (
              PARTITION BY `t4`.`account_id`
              ORDER BY `t4`.`timestamp` ASC NULLS LAST, `t4`.`event_id` ASC NULLS LAST
            ) - 1 AS `_rank`
          FROM (
            SELECT
              *
            FROM `events` AS `t1`
            WHERE
              `t1`.`timestamp` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
              AND `t1`.`name` = 'login'
          ) AS `t4`
        ) AS `t7`
        WHERE
          `t7`.`_rank` = 2
      ) AS `t10`
        ON `t5`.`account_id` = `t10`.`account_id`
      LEFT OUTER JOIN (
        SELECT
          `t3`.`account_id`,
          SUM(CAST(`t3`.`name` = 'integration_connected' AS BIGINT)) AS `_d0`,
          MIN(IF(`t3`.`name` = 'integration_connected', `t3`.`timestamp`, NULL)) AS `_d1`,
          SUM(CAST(`t3`.`name` = 'login' AS BIGINT)) AS `_d2`,
          SUM(
            CAST((
              `t3`.`name` = 'login'
            )
            AND (
              `t3`.`timestamp` > CAST('2024-05-25T00:00:00' AS TIMESTAMP)
            ) AS BIGINT)
          ) AS `_d4`
        FROM (
          SELECT
            *
          FROM `events` AS `t1`
          WHERE
            `t1`.`timestamp` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
            AND `t1`.`name` IN ('integration_connected', 'login')
        ) AS `t3`
        GROUP BY
          1
      ) AS `t8`
        ON `t5`.`account_id` = `t8`.`account_id`
    ) AS `t11`
  ) AS `t12`
) AS `t13`
