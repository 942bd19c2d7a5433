package cronjob

import (
	"errors"
	"testing"
	"time"
)

func TestParseScheduleAndMostRecent(t *testing.T) {
	base := time.Date(2026, 11, 21, 10, 7, 30, 0, time.UTC)
	cases := []struct {
		schedule, tz string
		next         time.Time
	}{
		{"@hourly", "", time.Date(2026, 11, 21, 11, 0, 0, 0, time.UTC)},
		{"*/15 * * * *", "", time.Date(2026, 11, 21, 10, 15, 0, 0, time.UTC)},
		{"0 9 * * MON-FRI", "", time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}, // the 21st is a Saturday
		{"@daily", "Europe/Paris", time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC)},
		{"@every 90s", "", base.Add(90 * time.Second)},
	}
	for _, tc := range cases {
		s, err := ParseSchedule(tc.schedule, tc.tz)
		if err != nil {
			t.Fatalf("%s: %v", tc.schedule, err)
		}
		if got := s.Next(base); !got.Equal(tc.next) {
			t.Errorf("%s (%s): next %v, want %v", tc.schedule, tc.tz, got.UTC(), tc.next)
		}
	}
	for _, bad := range []string{"61 * * * *", "* * *", "@fortnightly", "TZ=UTC * * * * *"} {
		if _, err := ParseSchedule(bad, ""); !errors.Is(err, ErrSchedule) {
			t.Errorf("%q: want ErrSchedule, got %v", bad, err)
		}
	}
	if _, err := ParseSchedule("@hourly", "Mars/Olympus"); !errors.Is(err, ErrSchedule) {
		t.Errorf("unknown time zone: %v", err)
	}

	s, _ := ParseSchedule("*/10 * * * *", "")
	last, missed, next := mostRecent(s, time.Date(2026, 11, 21, 9, 55, 0, 0, time.UTC), base)
	if !last.Equal(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)) || missed != 1 || !next.Equal(time.Date(2026, 11, 21, 10, 10, 0, 0, time.UTC)) {
		t.Fatalf("mostRecent: last %v missed %d next %v", last, missed, next)
	}
	last, missed, _ = mostRecent(s, base.Add(-48*time.Hour), base)
	if !last.Equal(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)) || missed <= tooManyMissed {
		t.Fatalf("many missed: last %v missed %d", last, missed)
	}
}
