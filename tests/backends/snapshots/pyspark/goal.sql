WITH `t5` AS (
  SELECT
    *
  FROM `events` AS `t2`
  WHERE
    `t2`.`timestamp` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
    AND `t2`.`name` = 'integration_connected'
), `t6` AS (
  SELECT
    *
  FROM `events` AS `t2`
  WHERE
    `t2`.`timestamp` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
    AND `t2`.`name` = 'login'
)
SELECT
  `t21`.`account_id`,
  GREATEST(
    LEAST(
      IF(
        COALESCE(COALESCE(`t21`.`_d0`, 0) >= CAST(1.0 AS DOUBLE), FALSE),
        COALESCE(`t21`.`_d2`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
        CAST('9999-01-01T00:00:00' AS TIMESTAMP)
      ),
      IF(
        COALESCE(COALESCE(`t21`.`_d1`, 0) >= CAST(3.0 AS DOUBLE), FALSE),
        COALESCE(`t21`.`_d3`, CAST('2024-06-01T00:00:00' AS TIMESTAMP)),
        CAST('9999-01-01T00:00:00' AS TIMESTAMP)
      )
    ),
    `t21`.`entered_at`
  ) AS `reached_at`
FROM (
  SELECT
    `t7`.`account_id`,
    `t7`.`entered_at`,
    `t8`.`name`,
    `t8`.`domain`,
    `t8`.`created_at`,
    `t8`.`segment`,
    `t8`.`plan`,
    `t8`.`industry`,
    `t8`.`employees`,
    `t8`.`region`,
    `t8`.`owner`,
    `t8`.`arr`,
    `t8`.`renewal_date`,
    `t8`.`properties`,
    `t13`.`_d0`,
    `t14`.`_d1`,
    `t19`.`_d2`,
    `t20`.`_d3`
  FROM (
    SELECT
      `t0`.`account_id`,
      `t0`.`entered_at`
    FROM `closeloop_enrollments` AS `t0`
    WHERE
      `t0`.`job_name` = 'Conformance'
  ) AS `t7`
  INNER JOIN (
    SELECT
      *
    FROM `accounts` AS `t1`
    WHERE
      `t1`.`created_at` <= CAST('2024-06-01T00:00:00' AS TIMESTAMP)
  ) AS `t8`
    ON `t7`.`account_id` = `t8`.`account_id`
  LEFT OUTER JOIN (
    SELECT
      `t9`.`account_id`,
      COUNT(*) AS `_d0`
    FROM `t5` AS `t9`
    GROUP BY
      1
  ) AS `t13`
    ON `t7`.`account_id` = `t13`.`account_id`
  LEFT OUTER JOIN (
    SELECT
      `t10`.`account_id`,
      COUNT(*) AS `_d1`
    FROM `t6` AS `t10`
    GROUP BY
      1
  ) AS `t14`
    ON `t7`.`account_id` = `t14`.`account_id`
  LEFT OUTER JOIN (
    SELECT
      `t15`.`account_id`,
      `t15`.`timestamp` AS `_d2`
    FROM (
      SELECT
        `t9`.`event_id`,
        `t9`.`account_id`,
        `t9`.`person_id`,
        `t9`.`name`,
        `t9`.`timestamp`,
        `t9`.`value`,
        `t9`.`properties`,
        ROW_NUMBER() OVER (
          PARTITION BY `t9`.`account_id`
          ORDER BY `t9`.`timestamp` ASC NULLS LAST, `t9`.`event_id` ASC NULLS LAST
        ) - 1 AS `_rank`
      FROM `t5` AS `t9`
    ) AS `t15`
    WHERE
      `t15`.`_rank` = 0
  ) AS `t19`
    ON `t7`.`account_id` = `t19`.`account_id`
  LEFT OUTER JOIN (
    SELECT
      `t16`.`account_id`,
      `t16`.`timestamp` AS `_d3`
    FROM (
      SELECT
        `t10`.`event_id`,
        `t10`.`account_id`,
        `t10`.`person_id`,
        `t10`.`name`,
        `t10`.`timestamp`,
        `t10`.`value`,
        `t10`.`properties`,
        ROW_NUMBER() OVER (
          PARTITION BY `t10`.`account_id`
          ORDER BY `t10`.`timestamp` ASC NULLS LAST, `t10`.`event_id` ASC NULLS LAST
        ) - 1 AS `_rank`
      FROM `t6` AS `t10`
    ) AS `t16`
    WHERE
      `t16`.`_rank` = 2
  ) AS `t20`
    ON `t7`.`account_id` = `t20`.`account_id`
) AS `t21`
WHERE
  (
    COALESCE(`t21`.`_d0`, 0) >= CAST(1.0 AS DOUBLE)
  )
  OR (
    COALESCE(`t21`.`_d1`, 0) >= CAST(3.0 AS DOUBLE)
  )
