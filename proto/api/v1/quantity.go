package apiv1

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
)

// This file is hand-written (not generated): the Kubernetes resource
// quantity, shared by the control plane (validation, quota, scheduling) and
// the agent (cgroup limits), which may not import controlplane/.

// ErrQuantity: a string is not a resource quantity.
var ErrQuantity = errors.New("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")

// Quantity is a parsed resource quantity ("500m", "0.5", "128Mi", "1G",
// "1e3"), held exactly as a rational number of base units (cores, bytes).
type Quantity struct {
	r *big.Rat
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
		return new(big.Rat)
	}
	return q.r
}

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
func (q Quantity) Value() int64 { return ceil(q.rat()) }

// MilliValue is the quantity in thousandths (millicores), rounded up.
func (q Quantity) MilliValue() int64 {
	return ceil(new(big.Rat).Mul(q.rat(), big.NewRat(1000, 1)))
}

// Sign is -1, 0 or +1.
func (q Quantity) Sign() int { return q.rat().Sign() }

// Cmp compares q and o: -1, 0 or +1.
func (q Quantity) Cmp(o Quantity) int { return q.rat().Cmp(o.rat()) }

// Add returns q+o.
func (q Quantity) Add(o Quantity) Quantity { return Quantity{r: new(big.Rat).Add(q.rat(), o.rat())} }

// Sub returns q-o.
func (q Quantity) Sub(o Quantity) Quantity { return Quantity{r: new(big.Rat).Sub(q.rat(), o.rat())} }

// Float64 is an approximation for ratios (HPA utilization, quota percentages).
func (q Quantity) Float64() float64 { f, _ := q.rat().Float64(); return f }

// String renders a canonical form: a whole number of base units with the
// largest exact binary suffix when it is a multiple of 1Ki (128Mi), else
// millis ("500m"), else plain ("2").
func (q Quantity) String() string {
	r := q.rat()
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
func NewMilliQuantity(n int64) Quantity { return Quantity{r: big.NewRat(n, 1000)} }

// NewQuantity makes a quantity of n base units (bytes, cores).
func NewQuantity(n int64) Quantity { return Quantity{r: big.NewRat(n, 1)} }
