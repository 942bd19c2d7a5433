package cronjob

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ErrSchedule: the schedule or time zone cannot be parsed.
var ErrSchedule = errors.New("invalid schedule")

// ParseSchedule parses a CronJob schedule in a time zone ("" is UTC).
func ParseSchedule(schedule, timeZone string) (cron.Schedule, error) {
	s := strings.TrimSpace(schedule)
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		return nil, fmt.Errorf("%w: %q: set spec.timeZone instead of a TZ= prefix", ErrSchedule, schedule)
	}
	if timeZone == "" {
		timeZone = "UTC"
	}
	if _, err := time.LoadLocation(timeZone); err != nil {
		return nil, fmt.Errorf("%w: timeZone %q: %w", ErrSchedule, timeZone, err)
	}
	sched, err := cron.ParseStandard("CRON_TZ=" + timeZone + " " + s)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrSchedule, schedule, err)
	}
	return sched, nil
}

// tooManyMissed bounds the search for missed runs (Kubernetes gives up
// after 100 too).
const tooManyMissed = 100

// mostRecent returns the latest scheduled time in (after, now], how many
// runs were missed in that interval, and the next time after now.
func mostRecent(sched cron.Schedule, after, now time.Time) (last time.Time, missed int, next time.Time) {
	t := sched.Next(after)
	for !t.After(now) {
		last = t
		missed++
		if missed > tooManyMissed {
			// Skip ahead: only the latest matters. Look back in growing
			// windows from now for the last run.
			for w := time.Minute; w < 400*24*time.Hour; w *= 2 {
				t2 := sched.Next(now.Add(-w))
				if t2.After(now) {
					continue
				}
				for ; !t2.After(now); t2 = sched.Next(t2) {
					last = t2
				}
				break
			}
			break
		}
		t = sched.Next(t)
	}
	return last, missed, sched.Next(now)
}
