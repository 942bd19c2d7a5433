package agent

import "time"

// SetVolumeRefreshInterval shortens the volume refresh pace for a test and
// returns the restore function.
func SetVolumeRefreshInterval(d time.Duration) func() {
	old := volumeRefreshInterval
	volumeRefreshInterval = d
	return func() { volumeRefreshInterval = old }
}
