package apiv1

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// randomQuantity draws strings near the grammar: mostly valid quantities of
// every suffix, sign and size, some malformed.
func randomQuantity(r *rand.Rand) string {
	var b strings.Builder
	switch r.IntN(6) {
	case 0:
		b.WriteByte('-')
	case 1:
		b.WriteByte('+')
	}
	digits := func(n int) {
		for range n {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
	}
	digits(r.IntN(21)) // 0 digits: malformed; 19+: past the fast path
	if r.IntN(3) == 0 {
		b.WriteByte('.')
		digits(r.IntN(6))
	}
	suffixes := []string{"", "", "m", "n", "u", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "e3", "E-2", "e+1", "x", "mm", ".5"}
	b.WriteString(suffixes[r.IntN(len(suffixes))])
	return b.String()
}

func sameQuantity(t *testing.T, what string, fast, slow Quantity) {
	t.Helper()
	if fast.Cmp(slow) != 0 || slow.Cmp(fast) != 0 || fast.Sign() != slow.Sign() || fast.String() != slow.String() ||
		fast.Value() != slow.Value() || fast.MilliValue() != slow.MilliValue() || fast.Float64() != slow.Float64() {
		t.Fatalf("%s: int64 form %v (%s, %d, %dm, %v) differs from the exact form %v (%s, %d, %dm, %v)", what,
			fast, fast.String(), fast.Value(), fast.MilliValue(), fast.Float64(), slow.rat(), slow.String(), slow.Value(), slow.MilliValue(), slow.Float64())
	}
}

// The int64 fast path accepts exactly what the exact parser accepts and
// agrees with it on every method, also for sums and differences that
// overflow the int64 form.
func TestQuantityFastPathMatchesExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fastUsed := 0
	var prev, prevExact Quantity
	for i := 0; i < 200_000; i++ {
		s := randomQuantity(r)
		fast, errFast := ParseQuantity(s)
		exact, errExact := parseRat(s)
		if (errFast == nil) != (errExact == nil) {
			t.Fatalf("%q: ParseQuantity error %v, exact parser error %v", s, errFast, errExact)
		}
		if errFast != nil {
			continue
		}
		if fast.r == nil {
			fastUsed++
		}
		sameQuantity(t, s, fast, exact)
		sameQuantity(t, s+" + previous", fast.Add(prev), Quantity{r: exact.rat()}.Add(Quantity{r: prevExact.rat()}))
		sameQuantity(t, s+" - previous", fast.Sub(prev), Quantity{r: exact.rat()}.Sub(Quantity{r: prevExact.rat()}))
		prev, prevExact = fast, exact
	}
	if fastUsed < 30_000 {
		t.Fatalf("only %d of the valid inputs took the int64 form", fastUsed)
	}
	for _, n := range []int64{0, 1, -1, math.MaxInt64, math.MinInt64, math.MaxInt64 / 1000, math.MinInt64 / 1000} {
		sameQuantity(t, "NewQuantity", NewQuantity(n), Quantity{r: NewQuantity(n).rat()})
		sameQuantity(t, "NewMilliQuantity", NewMilliQuantity(n), Quantity{r: NewMilliQuantity(n).rat()})
	}
	edge := []Quantity{NewMilliQuantity(math.MaxInt64), NewMilliQuantity(math.MinInt64), NewMilliQuantity(-1), NewMilliQuantity(1)}
	for _, a := range edge {
		for _, b := range edge {
			ra, rb := Quantity{r: a.rat()}, Quantity{r: b.rat()}
			sameQuantity(t, a.String()+"+"+b.String(), a.Add(b), ra.Add(rb))
			sameQuantity(t, a.String()+"-"+b.String(), a.Sub(b), ra.Sub(rb))
		}
	}
}

func BenchmarkParseQuantity(b *testing.B) {
	for _, s := range []string{"250m", "128Mi", "1.5"} {
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseQuantity(s); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s+"/exact", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseRat(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
