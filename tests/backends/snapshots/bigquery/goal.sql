SELECT
  `t18`.`account_id`,
  GREATEST(
    LEAST(
      IF(
        COALESCE(COALESCE(`t18`.`_d0`, 0) >= 1.0, FALSE),
        COALESCE(`t18`.`_d2`, DATETIME('2024-06-01T00:00:00')),
        DATETIME('9999-01-01T00:00:00')
      ),
      IF(
        COALESCE(COALESCE(`t18`.`_d1`, 0) >= 3.0, FALSE),
        COALESCE(`t18`.`_d3`, DATETIME('2024-06-01T00:00:00')),
        DATETIME('9999-01-01T00:00:00')
      )
    ),
    `t18`.`entered_at`
  ) AS `reached_at`
FROM (
  SELECT
    `t8`.`account_id`,
    `t8`.`entered_at`,
    `t9`.`name`,
    `t9`.`domain`,
    `t9`.`created_at`,
    `t9`.`segment`,
    `t9`.`plan`,
    `t9`.`industry`,
    `t9`.`employees`,
    `t9`.`region`,
    `t9`.`owner`,
    `t9`.`arr`,
    `t9`.`renewal_date`,
    `t9`.`properties`,
    `t16`.`_d2`,
    `t17`.`_d3`,
    `t11`.`_d0`,
    `t11`.`_d1`
  FROM (
    SELECT
      `t0`.`account_id`,
      `t0`.`entered_at`
    FROM `closeloop_enrollments` AS `t0`
    WHERE
      `t0`.`job_name` = 'Conformance'
  ) AS `t8`
  INNER JOIN (
    SELECT
      *
    FROM `accounts` AS `t1`
    WHERE
      `t1`.`created_at` <= DATETIME('2024-06-01T00:00:00')
  ) AS `t9`
    ON `t8`.`account_id` = `t9`.`account_id`
  LEFT OUTER JOIN (
    SELECT
      `t12`.`account_id`,
      `t12`.`timestamp` AS `_d2`
    FROM (
      SELECT
        `t6`.`event_id`,
        `t6`.`account_id`,
        `t6`.`person_id`,
        `t6`.`name`,
        `t6`.`timestamp`,
        `t6`.`value`,
        `t6`.`properties`,
        ROW_NUMBER() OVER (PARTITION BY `t6`.`account_id` ORDER BY `t6`.`timestamp` ASC, `t6`.`event_id` ASC) - 1 AS `_rank`
      FROM (
        SELECT
          *
        FROM `events` AS `t2`
        WHERE
          `t2`.`timestamp` <= DATETIME('2024-06-01T00:00:00')
          AND `t2`.`name` = 'integration_connected'
      ) AS `t6`
    ) AS `t12`
    WHERE
      `t12`.`_rank` = 0
  ) AS `t16`
    ON `t8`.`account_id` = `t16`.`account_id`
  LEFT OUTER JOIN (
    SELECT
      `t13`.`account_id`,
      `t13`.`timestamp` AS `_d3`
    FROM (
      SELECT
        `t7`.`event_id`,
        `t7`.`account_id`,
        `t7`.`person_id`,
        `t7`.`name`,
        `t7`.`timestamp`,
        `t7`.`value`,
        `t7`.`properties`,
        ROW_NUMBER() OVER (PARTITION BY `t7`.`account_id` ORDER BY `t7`.`timestamp` ASC, `t7`.`event_id` ASC) - 1 AS `_rank`
      FROM (
        SELECT
          *
        FROM `events` AS `t2`
        WHERE
          `t2`.`timestamp` <= DATETIME('2024-06-01T00:00:00') AND `t2`.`name` = 'login'
      ) AS `t7`
    ) AS `t13`
    WHERE
      `t13`.`_rank` = 2
  ) AS `t17`
    ON `t8`.`account_id` = `t17`.`account_id`
  LEFT OUTER JOIN (
    SELECT
      `t5`.`account_id`,
      COUNTIF(`t5`.`name` = 'integration_connected') AS `_d0`,
      COUNTIF(`t5`.`name` = 'login') AS `_d1`
    FROM (
      SELECT
        *
      FROM `events` AS `t2`
      WHERE
        `t2`.`timestamp` <= DATETIME('2024-06-01T00:00:00')
        AND `t2`.`name` IN ('integration_connected', 'login')
    ) AS `t5`
    GROUP BY
      1
  ) AS `t11`
    ON `t8`.`account_id` = `t11`.`account_id`
) AS `t18`
WHERE
  (
    COALESCE(`t18`.`_d0`, 0) >= 1.0
  ) OR (
    COALESCE(`t18`.`_d1`, 0) >= 3.0
  )
