package kinds

import (
	"errors"
	"testing"
)

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in          string
		milli, unit int64
		str         string
	}{
		{"500m", 500, 1, "500m"},
		{"0.5", 500, 1, "500m"},
		{"1", 1000, 1, "1"},
		{"2", 2000, 2, "2"},
		{"100.5m", 101, 1, "101m"}, // rounds up like Kubernetes
		{"128Mi", 128 << 20 * 1000, 128 << 20, "128Mi"},
		{"1Gi", 1 << 30 * 1000, 1 << 30, "1Gi"},
		{"1G", 1e12, 1e9, "1000000000"},
		{"1k", 1e6, 1000, "1000"},
		{"1Ki", 1024000, 1024, "1Ki"},
		{"1e3", 1e6, 1000, "1000"},
		{"1E-3", 1, 1, "1m"},
		{"+3", 3000, 3, "3"},
		{"0", 0, 0, "0"},
		{"250u", 1, 1, "1m"},
		{"1.5Gi", 1536 << 20 * 1000, 1536 << 20, "1536Mi"},
		{"12n", 1, 1, "1m"},
	}
	for _, tt := range tests {
		q, err := ParseQuantity(tt.in)
		if err != nil {
			t.Errorf("ParseQuantity(%q): %v", tt.in, err)
			continue
		}
		if got := q.MilliValue(); got != tt.milli {
			t.Errorf("ParseQuantity(%q).MilliValue() = %d, want %d", tt.in, got, tt.milli)
		}
		if got := q.Value(); got != tt.unit {
			t.Errorf("ParseQuantity(%q).Value() = %d, want %d", tt.in, got, tt.unit)
		}
		if got := q.String(); got != tt.str {
			t.Errorf("ParseQuantity(%q).String() = %q, want %q", tt.in, got, tt.str)
		}
	}
}

func TestParseQuantityRejects(t *testing.T) {
	for _, in := range []string{"", "abc", "1.2.3", "1X", "Mi", "1 Mi", "1mm", ".", "1e", "1e1234", "--1", "1Mb", "0x10"} {
		if q, err := ParseQuantity(in); !errors.Is(err, ErrQuantity) {
			t.Errorf("ParseQuantity(%q) = %v, %v; want ErrQuantity", in, q, err)
		}
	}
}

func TestQuantityArithmetic(t *testing.T) {
	a, b := MustParseQuantity("1.5"), MustParseQuantity("500m")
	if got := a.Add(b).MilliValue(); got != 2000 {
		t.Errorf("1.5 + 500m = %dm, want 2000m", got)
	}
	if got := a.Sub(b).String(); got != "1" {
		t.Errorf("1.5 - 500m = %s, want 1", got)
	}
	if a.Cmp(b) != 1 || b.Cmp(a) != -1 || a.Cmp(MustParseQuantity("1500m")) != 0 {
		t.Error("Cmp ordering wrong")
	}
	if MustParseQuantity("-1").Sign() != -1 || NewQuantity(0).Sign() != 0 {
		t.Error("Sign wrong")
	}
	if NewMilliQuantity(250).String() != "250m" || NewQuantity(64<<20).String() != "64Mi" {
		t.Error("constructors render wrong")
	}
	if MustParseQuantity("9999999999999999999999").Value() != 1<<63-1 {
		t.Error("huge value must saturate at MaxInt64")
	}
}
