WITH `t3` AS (
  SELECT
    *
  FROM `events` AS `t1`
  WHERE
    `t1`.`timestamp` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
    AND `t1`.`name` = 'integration_connected'
), `t4` AS (
  SELECT
    *
  FROM `events` AS `t1`
  WHERE
    `t1`.`timestamp` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
    AND `t1`.`name` = 'login'
)
SELECT
  `t23`.`account_id`,
  `t23`.`entered_at`,
  `t23`.`completed_at`,
  `t23`.`exited_at`,
  `t23`.`objective_0`,
  `t23`.`objective_1`,
  `t23`.`marker_0`,
  (
    `t23`.`entered_at` IS NOT NULL
  ) AND (
    `t23`.`exited_at` IS NULL
  ) AS `in_stage`,
  (
    `t23`.`exited_at` IS NOT NULL
  )
  AND (
    (
      `t23`.`completed_at` IS NULL
    )
    OR (
      `t23`.`completed_at` > `t23`.`exited_at`
    )
  ) AS `exited_incomplete`
FROM (
  SELECT
    `t22`.`account_id`,
    IF(
      `t22`.`entered_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP),
      `t22`.`entered_at`,
      CAST(NULL AS TIMESTAMP)
    ) AS `entered_at`,
    `t22`.`completed_at`,
    IF(
      `t22`.`exited_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP),
      `t22`.`exited_at`,
      CAST(NULL AS TIMESTAMP)
    ) AS `exited_at`,
    `t22`.`objective_0`,
    `t22`.`objective_1`,
    `t22`.`marker_0`
  FROM (
    SELECT
      `t21`.`account_id`,
      IF(
        COALESCE(
          (
            `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
          )
          AND (
            `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
          ),
          FALSE
        ),
        `t21`.`created_at`,
        CAST(NULL AS TIMESTAMP)
      ) AS `entered_at`,
      IF(
        IF(
          IF(
            COALESCE(COALESCE(`t21`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
            GREATEST(
              COALESCE(`t21`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
              IF(
                COALESCE(
                  (
                    `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                  )
                  AND (
                    `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                  ),
                  FALSE
                ),
                `t21`.`created_at`,
                CAST(NULL AS TIMESTAMP)
              )
            ),
            NULL
          ) IS NULL,
          CAST(NULL AS TIMESTAMP),
          IF(
            IF(
              COALESCE(COALESCE(`t21`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
              GREATEST(
                COALESCE(`t21`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                IF(
                  COALESCE(
                    (
                      `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                    )
                    AND (
                      `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                    ),
                    FALSE
                  ),
                  `t21`.`created_at`,
                  CAST(NULL AS TIMESTAMP)
                )
              ),
              NULL
            ) IS NULL,
            CAST(NULL AS TIMESTAMP),
            GREATEST(
              IF(
                COALESCE(COALESCE(`t21`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
                GREATEST(
                  COALESCE(`t21`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  IF(
                    COALESCE(
                      (
                        `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    ),
                    `t21`.`created_at`,
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              ),
              IF(
                COALESCE(COALESCE(`t21`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
                GREATEST(
                  COALESCE(`t21`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  IF(
                    COALESCE(
                      (
                        `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    ),
                    `t21`.`created_at`,
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
                `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
              )
              AND (
                `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
              ),
              FALSE
            ),
            `t21`.`created_at`,
            CAST(NULL AS TIMESTAMP)
          ) + INTERVAL '864000' SECOND
        ),
        IF(
          IF(
            COALESCE(COALESCE(`t21`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
            GREATEST(
              COALESCE(`t21`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
              IF(
                COALESCE(
                  (
                    `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                  )
                  AND (
                    `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                  ),
                  FALSE
                ),
                `t21`.`created_at`,
                CAST(NULL AS TIMESTAMP)
              )
            ),
            NULL
          ) IS NULL,
          CAST(NULL AS TIMESTAMP),
          IF(
            IF(
              COALESCE(COALESCE(`t21`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
              GREATEST(
                COALESCE(`t21`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                IF(
                  COALESCE(
                    (
                      `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                    )
                    AND (
                      `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                    ),
                    FALSE
                  ),
                  `t21`.`created_at`,
                  CAST(NULL AS TIMESTAMP)
                )
              ),
              NULL
            ) IS NULL,
            CAST(NULL AS TIMESTAMP),
            GREATEST(
              IF(
                COALESCE(COALESCE(`t21`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
                GREATEST(
                  COALESCE(`t21`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  IF(
                    COALESCE(
                      (
                        `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    ),
                    `t21`.`created_at`,
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              ),
              IF(
                COALESCE(COALESCE(`t21`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
                GREATEST(
                  COALESCE(`t21`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  IF(
                    COALESCE(
                      (
                        `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    ),
                    `t21`.`created_at`,
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
              `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
            )
            AND (
              `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
            ),
            FALSE
          ),
          `t21`.`created_at`,
          CAST(NULL AS TIMESTAMP)
        ) + INTERVAL '864000' SECOND,
        IF(
          IF(
            IF(
              COALESCE(COALESCE(`t21`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
              GREATEST(
                COALESCE(`t21`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                IF(
                  COALESCE(
                    (
                      `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                    )
                    AND (
                      `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                    ),
                    FALSE
                  ),
                  `t21`.`created_at`,
                  CAST(NULL AS TIMESTAMP)
                )
              ),
              NULL
            ) IS NULL,
            CAST(NULL AS TIMESTAMP),
            IF(
              IF(
                COALESCE(COALESCE(`t21`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
                GREATEST(
                  COALESCE(`t21`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  IF(
                    COALESCE(
                      (
                        `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    ),
                    `t21`.`created_at`,
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              ) IS NULL,
              CAST(NULL AS TIMESTAMP),
              GREATEST(
                IF(
                  COALESCE(COALESCE(`t21`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
                  GREATEST(
                    COALESCE(`t21`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                    IF(
                      COALESCE(
                        (
                          `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                        )
                        AND (
                          `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                        ),
                        FALSE
                      ),
                      `t21`.`created_at`,
                      CAST(NULL AS TIMESTAMP)
                    )
                  ),
                  NULL
                ),
                IF(
                  COALESCE(COALESCE(`t21`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
                  GREATEST(
                    COALESCE(`t21`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                    IF(
                      COALESCE(
                        (
                          `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                        )
                        AND (
                          `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                        ),
                        FALSE
                      ),
                      `t21`.`created_at`,
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
                  `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                )
                AND (
                  `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                ),
                FALSE
              ),
              `t21`.`created_at`,
              CAST(NULL AS TIMESTAMP)
            ) + INTERVAL '864000' SECOND
          ),
          IF(
            IF(
              COALESCE(COALESCE(`t21`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
              GREATEST(
                COALESCE(`t21`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                IF(
                  COALESCE(
                    (
                      `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                    )
                    AND (
                      `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                    ),
                    FALSE
                  ),
                  `t21`.`created_at`,
                  CAST(NULL AS TIMESTAMP)
                )
              ),
              NULL
            ) IS NULL,
            CAST(NULL AS TIMESTAMP),
            IF(
              IF(
                COALESCE(COALESCE(`t21`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
                GREATEST(
                  COALESCE(`t21`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                  IF(
                    COALESCE(
                      (
                        `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                      )
                      AND (
                        `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                      ),
                      FALSE
                    ),
                    `t21`.`created_at`,
                    CAST(NULL AS TIMESTAMP)
                  )
                ),
                NULL
              ) IS NULL,
              CAST(NULL AS TIMESTAMP),
              GREATEST(
                IF(
                  COALESCE(COALESCE(`t21`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
                  GREATEST(
                    COALESCE(`t21`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                    IF(
                      COALESCE(
                        (
                          `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                        )
                        AND (
                          `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                        ),
                        FALSE
                      ),
                      `t21`.`created_at`,
                      CAST(NULL AS TIMESTAMP)
                    )
                  ),
                  NULL
                ),
                IF(
                  COALESCE(COALESCE(`t21`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
                  GREATEST(
                    COALESCE(`t21`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
                    IF(
                      COALESCE(
                        (
                          `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
                        )
                        AND (
                          `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
                        ),
                        FALSE
                      ),
                      `t21`.`created_at`,
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
        COALESCE(COALESCE(`t21`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
        GREATEST(
          COALESCE(`t21`.`_d1`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
          IF(
            COALESCE(
              (
                `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
              )
              AND (
                `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
              ),
              FALSE
            ),
            `t21`.`created_at`,
            CAST(NULL AS TIMESTAMP)
          )
        ),
        NULL
      ) AS `objective_0`,
      IF(
        COALESCE(COALESCE(`t21`.`_d2`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
        GREATEST(
          COALESCE(`t21`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
          IF(
            COALESCE(
              (
                `t21`.`created_at` > CAST('2024-02-02T00:00:00' AS TIMESTAMP)
              )
              AND (
                `t21`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
              ),
              FALSE
            ),
            `t21`.`created_at`,
            CAST(NULL AS TIMESTAMP)
          )
        ),
        NULL
      ) AS `objective_1`,
      COALESCE(COALESCE(`t21`.`_d4`, 0) >= CAST(1.0 AS DOUBLE), FALSE) AS `marker_0`
    FROM (
      SELECT
        `t6`.`account_id`,
        `t6`.`name`,
        `t6`.`domain`,
        `t6`.`created_at`,
        `t6`.`segment`,
        `t6`.`plan`,
        `t6`.`industry`,
        `t6`.`employees`,
        `t6`.`region`,
        `t6`.`owner`,
        `t6`.`arr`,
        `t6`.`renewal_date`,
        `t6`.`properties`,
        `t13`.`_d0`,
        `t19`.`_d1`,
        `t14`.`_d2`,
        `t20`.`_d3`,
        `t12`.`_d4`
      FROM (
        SELECT
          *
        FROM `accounts` AS `t0`
        WHERE
          `t0`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
      ) AS `t6`
      LEFT OUTER JOIN (
        SELECT
          `t7`.`account_id`,
          COUNT(*) AS `_d0`
        FROM `t3` AS `t7`
        GROUP BY
          1
      ) AS `t13`
        ON `t6`.`account_id` = `t13`.`account_id`
      LEFT OUTER JOIN (
        SELECT
          `t15`.`account_id`,
          `t15`.`timestamp` AS `_d1`
        FROM (
          SELECT
            `t7`.`event_id`,
            `t7`.`account_id`,
            `t7`.`person_id`,
            `t7`.`name`,
            `t7`.`timestamp`,
            `t7`.`value`,
            `t7`.`properties`,
            ROW_NUMBER() OVER (
              PARTITION BY `t7`.`account_id`
              ORDER BY `t7`.`timestamp` ASC NULLS LAST, `t7`.`event_id` ASC NULLS LAST
            ) - 1 AS `_rank`
          FROM `t3` AS `t7`
        ) AS `t15`
        WHERE
          `t15`.`_rank` = 0
      ) AS `t19`
        ON `t6`.`account_id` = `t19`.`account_id`
      LEFT OUTER JOIN (
        SELECT
          `t8`.`account_id`,
          COUNT(*) AS `_d2`
        FROM `t4` AS `t8`
        GROUP BY
          1
      ) AS `t14`
        ON `t6`.`account_id` = `t14`.`account_id`
      LEFT OUTER JOIN (
        SELECT
          `t16`.`account_id`,
          `t16`.`timestamp` AS `_d3`
        FROM (
          SELECT
            `t8`.`event_id`,
            `t8`.`account_id`,
            `t8`.`person_id`,
            `t8`.`name`,
            `t8`.`timestamp`,
            `t8`.`value`,
            `t8`.`properties`,
            ROW_NUMBER() OVER (
              PARTITION BY `t8`.`account_id`
              ORDER BY `t8`.`timestamp` ASC NULLS LAST, `t8`.`event_id` ASC NULLS LAST
            ) - 1 AS `_rank`
          FROM `t4` AS `t8`
        ) AS `t16`
        WHERE
          `t16`.`_rank` = 2
      ) AS `t20`
        ON `t6`.`account_id` = `t20`.`account_id`
      LEFT OUTER JOIN (
        SELECT
          `t5`.`account_id`,
          COUNT(*) AS `_d4`
        FROM (
          SELECT
            *
          FROM `events` AS `t1`
          WHERE
            `t1`.`timestamp` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
            AND `t1`.`name` = 'login'
            AND `t1`.`timestamp` > CAST('2024-05-25T00:00:00' AS TIMESTAMP)
        ) AS `t5`
        GROUP BY
          1
      ) AS `t12`
        ON `t6`.`account_id` = `t12`.`account_id`
    ) AS `t21`
  ) AS `t22`
) AS `t23`
