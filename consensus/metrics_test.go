package consensus_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiffhq/skiff/consensus"
	"github.com/skiffhq/skiff/consensus/consensustest"
)

func TestMetricsExposed(t *testing.T) {
	regs := map[string]*prometheus.Registry{}
	c := consensustest.Start(t, 3, func(cfg *consensus.Config) {
		r := prometheus.NewRegistry()
		regs[cfg.ID] = r
		cfg.Registerer = r
	})
	l := c.MustLeader(t)
	put(t, l.Store(), "/m", "1")
	w, err := l.Store().Watch(ctxT(t), []byte("/m"), false, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	mfs, err := regs[l.ID].Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.Histogram != nil:
			got[mf.GetName()] = float64(m.Histogram.GetSampleCount())
		case m.Gauge != nil:
			got[mf.GetName()] = m.Gauge.GetValue()
		case m.Counter != nil:
			got[mf.GetName()] = m.Counter.GetValue()
		}
	}
	for name, check := range map[string]func(float64) bool{
		"skiff_store_apply_seconds":        func(v float64) bool { return v >= 1 },
		"skiff_store_commit_seconds":       func(v float64) bool { return v >= 1 },
		"skiff_store_leader_changes_total": func(v float64) bool { return v >= 1 },
		"skiff_store_is_leader":            func(v float64) bool { return v == 1 },
		"skiff_store_watchers":             func(v float64) bool { return v == 1 },
		"skiff_store_revision":             func(v float64) bool { return v >= 1 },
		"skiff_store_applied_index":        func(v float64) bool { return v >= 1 },
	} {
		v, ok := got[name]
		if !ok || !check(v) {
			t.Errorf("metric %s = %v (present %v)", name, v, ok)
		}
	}
}
