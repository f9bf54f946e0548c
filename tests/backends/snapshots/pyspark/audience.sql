SELECT DISTINCT
  `t11`.`account_id`
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
    `t10`.`_d2`,
    `t8`.`_d0`,
    `t8`.`_d1`
  FROM (
    SELECT
      *
    FROM `accounts` AS `t0`
    WHERE
      `t0`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
  ) AS `t5`
  LEFT OUTER JOIN (
    SELECT
      `t6`.`account_id`,
      COUNT(*) AS `_d2`
    FROM (
      SELECT
        *
      FROM (
        SELECT
          *
        FROM `events` AS `t1`
        WHERE
          `t1`.`timestamp` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
          AND `t1`.`name` = 'invoice_paid'
      ) AS `t4`
      WHERE
        GET_JSON_OBJECT(`t4`.`properties`, '$.method') = 'card'
    ) AS `t6`
    GROUP BY
      1
  ) AS `t10`
    ON `t5`.`account_id` = `t10`.`account_id`
  LEFT OUTER JOIN (
    SELECT
      `t3`.`account_id`,
      SUM(CAST(`t3`.`name` = 'integration_connected' AS BIGINT)) AS `_d0`,
      SUM(
        CAST((
          `t3`.`name` = 'login'
        )
        AND (
          `t3`.`timestamp` > CAST('2024-05-25T00:00:00' AS TIMESTAMP)
        ) AS BIGINT)
      ) AS `_d1`
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
WHERE
  `t11`.`created_at` > CAST('2024-05-18T00:00:00' AS TIMESTAMP)
  AND `t11`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
  AND COALESCE(`t11`.`_d0`, 0) = CAST(0.0 AS DOUBLE)
  AND `t11`.`segment` IN ('self_serve', 'mid_market')
  AND NOT (
    COALESCE(COALESCE(`t11`.`_d1`, 0) >= CAST(1.0 AS DOUBLE), FALSE)
  )
  AND COALESCE(`t11`.`_d2`, 0) >= CAST(1.0 AS DOUBLE)
