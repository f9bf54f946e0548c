SELECT DISTINCT
  `t17`.`account_id`
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
    `t16`.`_d0`,
    `t13`.`_d1`
  FROM (
    SELECT
      *
    FROM `accounts` AS `t0`
    WHERE
      `t0`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
  ) AS `t6`
  LEFT OUTER JOIN (
    SELECT
      `t14`.`account_id`,
      COUNT(*) AS `_d0`
    FROM (
      SELECT
        `t11`.`account_id`
      FROM (
        SELECT
          `t9`.`person_id`,
          `t9`.`account_id`,
          `t9`.`email`,
          `t9`.`name`,
          `t9`.`role`,
          `t9`.`created_at`,
          `t9`.`properties`,
          `t7`.`account__account_id`,
          `t7`.`account__name`,
          `t7`.`account__domain`,
          `t7`.`account__created_at`,
          `t7`.`account__segment`,
          `t7`.`account__plan`,
          `t7`.`account__industry`,
          `t7`.`account__employees`,
          `t7`.`account__region`,
          `t7`.`account__owner`,
          `t7`.`account__arr`,
          `t7`.`account__renewal_date`,
          `t7`.`account__properties`
        FROM (
          SELECT
            *
          FROM `people` AS `t2`
          WHERE
            (
              `t2`.`created_at` IS NULL
            )
            OR (
              `t2`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
            )
        ) AS `t9`
        INNER JOIN (
          SELECT
            `t0`.`account_id` AS `_account_key`,
            `t0`.`account_id` AS `account__account_id`,
            `t0`.`name` AS `account__name`,
            `t0`.`domain` AS `account__domain`,
            `t0`.`created_at` AS `account__created_at`,
            `t0`.`segment` AS `account__segment`,
            `t0`.`plan` AS `account__plan`,
            `t0`.`industry` AS `account__industry`,
            `t0`.`employees` AS `account__employees`,
            `t0`.`region` AS `account__region`,
            `t0`.`owner` AS `account__owner`,
            `t0`.`arr` AS `account__arr`,
            `t0`.`renewal_date` AS `account__renewal_date`,
            `t0`.`properties` AS `account__properties`
          FROM `accounts` AS `t0`
          WHERE
            `t0`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
        ) AS `t7`
          ON `t9`.`account_id` = `t7`.`_account_key`
      ) AS `t11`
      WHERE
        COALESCE(`t11`.`role` = 'admin', FALSE)
    ) AS `t14`
    GROUP BY
      1
  ) AS `t16`
    ON `t6`.`account_id` = `t16`.`account_id`
  LEFT OUTER JOIN (
    SELECT
      `t10`.`account_id`,
      SUM(`t10`.`value`) AS `_d1`
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
      ) AS `t5`
      WHERE
        GET_JSON_OBJECT(`t5`.`properties`, '$.method') = 'card'
    ) AS `t10`
    GROUP BY
      1
  ) AS `t13`
    ON `t6`.`account_id` = `t13`.`account_id`
) AS `t17`
WHERE
  COALESCE(`t17`.`_d0`, 0) >= CAST(1.0 AS DOUBLE)
  AND COALESCE(`t17`.`_d1`, 0) > CAST(100.0 AS DOUBLE)
  AND (
    (
      UNIX_TIMESTAMP(CAST(CAST('2024-06-01T00:00:00' AS TIMESTAMP) AS TIMESTAMP)) - UNIX_TIMESTAMP(CAST(`t17`.`created_at` AS TIMESTAMP))
    ) / CAST(86400.0 AS DOUBLE)
  ) < CAST(30.0 AS DOUBLE)
