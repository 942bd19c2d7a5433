package apiv1

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strconv"
	"strings"
)

// This file is hand-written (not generated): the Kubernetes resource
// quantity, shared by the control plane (validation, quota, scheduling) and
// the agent (cgroup limits), which may not import controlplane/.

// ErrQuantity: a string is not a resource quantity.
var ErrQuantity = errors.New("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")

// Quantity is a parsed resource quantity ("500m", "0.5", "128Mi", "1G",
// "1e3"), held exactly. Almost every quantity in a pod spec is a whole
// number of thousandths that fits an int64 (cpu "250m", memory "128Mi"):
// those are held as that integer, parsed and added without allocating
// (validation and scheduling parse several per pod); the rest ("1n",
// "100.5m", "1Ei", "1e-2") as a rational number of base units, as
// Kubernetes' Quantity keeps an int64 fast path beside its inf.Dec.
type Quantity struct {
	r     *big.Rat // nil: the value is milli/1000
	milli int64
}

var suffixes = map[string]*big.Rat{
	"n": big.NewRat(1, 1_000_000_000), "u": big.NewRat(1, 1_000_000), "m": big.NewRat(1, 1000), "": big.NewRat(1, 1),
	"k": big.NewRat(1000, 1), "M": big.NewRat(1_000_000, 1), "G": big.NewRat(1_000_000_000, 1),
	"T": big.NewRat(1_000_000_000_000, 1), "P": big.NewRat(1_000_000_000_000_000, 1), "E": big.NewRat(1_000_000_000_000_000_000, 1),
	"Ki": big.NewRat(1<<10, 1), "Mi": big.NewRat(1<<20, 1), "Gi": big.NewRat(1<<30, 1),
	"Ti": big.NewRat(1<<40, 1), "Pi": big.NewRat(1<<50, 1), "Ei": big.NewRat(1<<60, 1),
}

// ParseQuantity parses a Kubernetes quantity: a decimal number followed by a
// binary suffix (Ki Mi Gi Ti Pi Ei), a decimal suffix (n u m k M G T P E) or
// an exponent (e3, E-2).
func ParseQuantity(s string) (Quantity, error) {
	if milli, ok := parseMilli(s); ok {
		return Quantity{milli: milli}, nil
	}
	return parseRat(s)
}

// milliPerUnit is each suffix's size in thousandths, for the suffixes the
// int64 form can hold.
var milliPerUnit = map[string]uint64{
	"m": 1, "": 1000, "k": 1e6, "M": 1e9, "G": 1e12, "T": 1e15, "P": 1e18,
	"Ki": 1 << 10 * 1000, "Mi": 1 << 20 * 1000, "Gi": 1 << 30 * 1000, "Ti": 1 << 40 * 1000, "Pi": 1 << 50 * 1000,
}

var pow10 = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18}

// parseMilli is the fast path: [+-]digits[.digits]suffix whose value is a
// whole number of thousandths within int64. Anything else (including
// every malformed input) is left to parseRat, so both accept the same
// strings.
func parseMilli(s string) (int64, bool) {
	if s == "" || len(s) > 64 {
		return 0, false
	}
	neg := false
	if s[0] == '+' || s[0] == '-' {
		neg, s = s[0] == '-', s[1:]
	}
	var mantissa uint64
	digits, fracDigits, i := 0, 0, 0
	inFrac := false
	for ; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if inFrac || digits == 0 {
				return 0, false
			}
			inFrac = true
			continue
		}
		if c < '0' || c > '9' {
			break
		}
		if digits == 18 {
			return 0, false // may overflow: the slow path decides
		}
		mantissa = mantissa*10 + uint64(c-'0')
		digits++
		if inFrac {
			fracDigits++
		}
	}
	if digits == 0 || (inFrac && fracDigits == 0) {
		return 0, false
	}
	unit, ok := milliPerUnit[s[i:]]
	if !ok {
		return 0, false
	}
	hi, lo := bits.Mul64(mantissa, unit)
	if hi != 0 || lo%pow10[fracDigits] != 0 {
		return 0, false
	}
	v := lo / pow10[fracDigits]
	if v > math.MaxInt64 {
		return 0, false
	}
	if neg {
		return -int64(v), true
	}
	return int64(v), true
}

// parseRat parses any quantity exactly as a rational number.
func parseRat(s string) (Quantity, error) {
	if s == "" || len(s) > 64 {
		return Quantity{}, ErrQuantity
	}
	num := s
	sign := ""
	if num[0] == '+' || num[0] == '-' {
		sign, num = num[:1], num[1:]
	}
	end := 0
	dots := 0
	for end < len(num) && (num[end] >= '0' && num[end] <= '9' || num[end] == '.') {
		if num[end] == '.' {
			dots++
		}
		end++
	}
	digits, suffix := num[:end], num[end:]
	if digits == "" || digits == "." || dots > 1 {
		return Quantity{}, ErrQuantity
	}
	value, ok := new(big.Rat).SetString(sign + digits)
	if !ok {
		return Quantity{}, ErrQuantity
	}
	if mult, ok := suffixes[suffix]; ok {
		return Quantity{r: value.Mul(value, mult)}, nil
	}
	if suffix[0] == 'e' || suffix[0] == 'E' {
		exp := suffix[1:]
		neg := false
		if exp != "" && (exp[0] == '+' || exp[0] == '-') {
			neg, exp = exp[0] == '-', exp[1:]
		}
		if exp == "" || len(exp) > 3 || strings.Trim(exp, "0123456789") != "" {
			return Quantity{}, ErrQuantity
		}
		var n int64
		fmt.Sscan(exp, &n)
		p := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(n), nil))
		if neg {
			return Quantity{r: value.Quo(value, p)}, nil
		}
		return Quantity{r: value.Mul(value, p)}, nil
	}
	return Quantity{}, ErrQuantity
}

// MustParseQuantity is ParseQuantity for constants in code and tests.
func MustParseQuantity(s string) Quantity {
	q, err := ParseQuantity(s)
	if err != nil {
		panic(fmt.Sprintf("quantity %q: %v", s, err))
	}
	return q
}

func (q Quantity) rat() *big.Rat {
	if q.r == nil {
		return big.NewRat(q.milli, 1000)
	}
	return q.r
}

// small reports whether both are in the int64 form.
func (q Quantity) small(o Quantity) bool { return q.r == nil && o.r == nil }

// ceil rounds up to an integer, saturating at the int64 range, as Kubernetes
// does (100.5m CPU is 101 millicores).
func ceil(r *big.Rat) int64 {
	n, d := r.Num(), r.Denom()
	q, m := new(big.Int).QuoRem(n, d, new(big.Int))
	if m.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		if q.Sign() < 0 {
			return math.MinInt64
		}
		return math.MaxInt64
	}
	return q.Int64()
}

// Value is the quantity in base units (bytes, cores), rounded up.
func (q Quantity) Value() int64 {
	if q.r == nil {
		v := q.milli / 1000
		if q.milli%1000 > 0 {
			v++
		}
		return v
	}
	return ceil(q.r)
}

// MilliValue is the quantity in thousandths (millicores), rounded up.
func (q Quantity) MilliValue() int64 {
	if q.r == nil {
		return q.milli
	}
	return ceil(new(big.Rat).Mul(q.r, big.NewRat(1000, 1)))
}

// Sign is -1, 0 or +1.
func (q Quantity) Sign() int {
	if q.r == nil {
		return cmpInt(q.milli, 0)
	}
	return q.r.Sign()
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Cmp compares q and o: -1, 0 or +1.
func (q Quantity) Cmp(o Quantity) int {
	if q.small(o) {
		return cmpInt(q.milli, o.milli)
	}
	return q.rat().Cmp(o.rat())
}

// Add returns q+o.
func (q Quantity) Add(o Quantity) Quantity {
	if q.small(o) {
		if sum := q.milli + o.milli; (sum > q.milli) == (o.milli > 0) {
			return Quantity{milli: sum}
		}
	}
	return Quantity{r: new(big.Rat).Add(q.rat(), o.rat())}
}

// Sub returns q-o.
func (q Quantity) Sub(o Quantity) Quantity {
	if q.small(o) {
		if diff := q.milli - o.milli; (diff < q.milli) == (o.milli > 0) {
			return Quantity{milli: diff}
		}
	}
	return Quantity{r: new(big.Rat).Sub(q.rat(), o.rat())}
}

// Float64 is an approximation for ratios (HPA utilization, quota percentages).
func (q Quantity) Float64() float64 {
	if q.r == nil && q.milli > -1<<53 && q.milli < 1<<53 {
		return float64(q.milli) / 1000 // both exact: the quotient is correctly rounded
	}
	f, _ := q.rat().Float64()
	return f
}

// String renders a canonical form: a whole number of base units with the
// largest exact binary suffix when it is a multiple of 1Ki (128Mi), else
// millis ("500m"), else plain ("2").
func (q Quantity) String() string {
	if q.r == nil {
		if q.milli%1000 != 0 {
			return strconv.FormatInt(q.milli, 10) + "m"
		}
		n := q.milli / 1000
		if n != 0 {
			for _, s := range []string{"Pi", "Ti", "Gi", "Mi", "Ki"} { // 1Ei and more is never this form
				if div := int64(milliPerUnit[s] / 1000); n%div == 0 {
					return strconv.FormatInt(n/div, 10) + s
				}
			}
		}
		return strconv.FormatInt(n, 10)
	}
	r := q.r
	if r.IsInt() {
		n := r.Num()
		if n.Sign() != 0 {
			for _, s := range []string{"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"} {
				div := suffixes[s].Num()
				if new(big.Int).Rem(n, div).Sign() == 0 {
					return new(big.Int).Quo(n, div).String() + s
				}
			}
		}
		return n.String()
	}
	milli := new(big.Rat).Mul(r, big.NewRat(1000, 1))
	if milli.IsInt() {
		return milli.Num().String() + "m"
	}
	return fmt.Sprintf("%dm", q.MilliValue())
}

// NewMilliQuantity makes a quantity of n thousandths (n millicores).
func NewMilliQuantity(n int64) Quantity { return Quantity{milli: n} }

// NewQuantity makes a quantity of n base units (bytes, cores).
func NewQuantity(n int64) Quantity {
	if n > math.MinInt64/1000 && n < math.MaxInt64/1000 {
		return Quantity{milli: n * 1000}
	}
	return Quantity{r: big.NewRat(n, 1)}
}
