package ctrlkit

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// Waves grow 1, 2, 4 …; the first wave with a failure is the last one
// sent, its successes still count.
func TestSlowStartBatchesStopsAfterFailingWave(t *testing.T) {
	items := make([]string, 20)
	for i := range items {
		items[i] = fmt.Sprint(i)
	}
	var waves [][]string
	done, err := SlowStartBatches(items, func(batch []string) ([]error, error) {
		waves = append(waves, slices.Clone(batch))
		errs := make([]error, len(batch))
		for i, it := range batch {
			if it == "5" {
				errs[i] = errors.New("quota")
			}
		}
		return errs, nil
	})
	if err == nil {
		t.Fatal("want the failing item's error")
	}
	if len(waves) != 3 || len(waves[0]) != 1 || len(waves[1]) != 2 || len(waves[2]) != 4 {
		t.Fatalf("waves %v, want sizes 1, 2, 4 then stop", waves)
	}
	if want := []string{"0", "1", "2", "3", "4", "6"}; !slices.Equal(done, want) {
		t.Fatalf("done %v, want %v", done, want)
	}
	callErr := errors.New("unavailable")
	done, err = SlowStartBatches(items, func([]string) ([]error, error) { return nil, callErr })
	if !errors.Is(err, callErr) || len(done) != 0 {
		t.Fatalf("failed call: done %v err %v", done, err)
	}
}
