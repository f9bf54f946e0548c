SELECT DISTINCT
  `t10`.`account_id`
FROM (
  SELECT
    `t4`.`account_id`,
    `t4`.`name`,
    `t4`.`domain`,
    `t4`.`created_at`,
    `t4`.`segment`,
    `t4`.`plan`,
    `t4`.`industry`,
    `t4`.`employees`,
    `t4`.`region`,
    `t4`.`owner`,
    `t4`.`arr`,
    `t4`.`renewal_date`,
    `t4`.`properties`,
    `t9`.`_d2`,
    `t8`.`_d0`,
    `t8`.`_d1`
  FROM (
    SELECT
      *
    FROM `accounts` AS `t0`
    WHERE
      `t0`.`created_at` <= DATETIME('2024-06-01T00:00:00')
  ) AS `t4`
  LEFT OUTER JOIN (
    SELECT
      `t5`.`account_id`,
      COUNT(*) AS `_d2`
    FROM (
      SELECT
        *
      FROM `events` AS `t1`
      WHERE
        `t1`.`timestamp` <= DATETIME('2024-06-01T00:00:00')
        AND `t1`.`name` = 'invoice_paid'
        AND safe.string(CAST(`t1`.`properties` AS JSON)['method']) = 'card'
    ) AS `t5`
    GROUP BY
      1
  ) AS `t9`
    ON `t4`.`account_id` = `t9`.`account_id`
  LEFT OUTER JOIN (
    SELECT
      `t3`.`account_id`,
      COUNTIF(`t3`.`name` = 'integration_connected') AS `_d0`,
      COUNTIF(
        (
          `t3`.`name` = 'login'
        )
        AND (
          `t3`.`timestamp` > DATETIME('2024-05-25T00:00:00')
        )
      ) AS `_d1`
    FROM (
      SELECT
        *
      FROM `events` AS `t1`
      WHERE
        `t1`.`timestamp` <= DATETIME('2024-06-01T00:00:00')
        AND `t1`.`name` IN ('integration_connected', 'login')
    ) AS `t3`
    GROUP BY
      1
  ) AS `t8`
    ON `t4`.`account_id` = `t8`.`account_id`
) AS `t10`
WHERE
  `t10`.`created_at` > DATETIME('2024-05-18T00:00:00')
  AND `t10`.`created_at` <= DATETIME('2024-06-01T00:00:00')
  AND COALESCE(`t10`.`_d0`, 0) = 0.0
  AND `t10`.`segment` IN ('self_serve', 'mid_market')
  AND NOT (
    COALESCE(COALESCE(`t10`.`_d1`, 0) >= 1.0, FALSE)
  )
  AND COALESCE(`t10`.`_d2`, 0) >= 1.0
