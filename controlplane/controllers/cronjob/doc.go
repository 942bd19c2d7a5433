// Package cronjob is the CronJob controller: it creates a Job from the
// jobTemplate at each time the schedule names (standard 5-field cron
// syntax, macros such as @hourly and @daily, "@every 5m", in spec.timeZone
// or UTC; parsed by robfig/cron), honouring startingDeadlineSeconds for
// missed runs, the concurrencyPolicy (Allow; Forbid skips a run while a
// Job is active; Replace deletes the active Jobs first), suspend, and the
// successful/failed Job history limits. Job names are <cronjob>-<minutes
// since the epoch of the scheduled time>, so a run is created once even
// across leader changes. The clock is injectable (ctrlkit.Config.Now).
package cronjob
