SELECT
  `t5`.`unit_id`,
  `t5`.`account_id`,
  `t5`.`arm`,
  `t5`.`entered_at`,
  `t5`.`goal_at`,
  `t5`.`exited_at`,
  `t5`.`exit_reason`,
  `t3`.`segment`
FROM (
  SELECT
    `t0`.`enrollment_id` AS `unit_id`,
    `t0`.`account_id`,
    `t0`.`arm`,
    `t0`.`entered_at`,
    IF(`t0`.`completed_at` <= DATETIME('2024-06-01T00:00:00'), `t0`.`completed_at`, NULL) AS `goal_at`,
    IF(`t0`.`exited_at` <= DATETIME('2024-06-01T00:00:00'), `t0`.`exited_at`, NULL) AS `exited_at`,
    IF(`t0`.`exited_at` <= DATETIME('2024-06-01T00:00:00'), `t0`.`exit_reason`, NULL) AS `exit_reason`
  FROM `closeloop_enrollments` AS `t0`
  WHERE
    `t0`.`job_name` = 'Conformance'
    AND `t0`.`entered_at` <= DATETIME('2024-06-01T00:00:00')
) AS `t5`
LEFT OUTER JOIN (
  SELECT
    `t1`.`account_id`,
    `t1`.`segment`
  FROM `accounts` AS `t1`
) AS `t3`
  ON `t5`.`account_id` = `t3`.`account_id`
