SELECT DISTINCT
  `t14`.`account_id`
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
    `t9`.`_d0`,
    `t10`.`_d1`,
    `t13`.`_d2`
  FROM (
    SELECT
      *
    FROM `accounts` AS `t0`
    WHERE
      `t0`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
  ) AS `t6`
  LEFT OUTER JOIN (
    SELECT
      `t3`.`account_id`,
      COUNT(*) AS `_d0`
    FROM (
      SELECT
        *
      FROM `events` AS `t1`
      WHERE
        `t1`.`timestamp` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
        AND `t1`.`name` = 'integration_connected'
    ) AS `t3`
    GROUP BY
      1
  ) AS `t9`
    ON `t6`.`account_id` = `t9`.`account_id`
  LEFT OUTER JOIN (
    SELECT
      `t5`.`account_id`,
      COUNT(*) AS `_d1`
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
  ) AS `t10`
    ON `t6`.`account_id` = `t10`.`account_id`
  LEFT OUTER JOIN (
    SELECT
      `t11`.`account_id`,
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
    ) AS `t11`
    GROUP BY
      1
  ) AS `t13`
    ON `t6`.`account_id` = `t13`.`account_id`
) AS `t14`
WHERE
  `t14`.`created_at` > CAST('2024-05-18T00:00:00' AS TIMESTAMP)
  AND `t14`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
  AND COALESCE(`t14`.`_d0`, 0) = CAST(0.0 AS DOUBLE)
  AND `t14`.`segment` IN ('self_serve', 'mid_market')
  AND NOT (
    COALESCE(COALESCE(`t14`.`_d1`, 0) >= CAST(1.0 AS DOUBLE), FALSE)
  )
  AND COALESCE(`t14`.`_d2`, 0) >= CAST(1.0 AS DOUBLE)
