package kinds

import apiv1 "github.com/skiffhq/skiff/proto/api/v1"

// The resource quantity lives in proto/api/v1 so that the agent, which may
// not import controlplane/, parses quantities the same way. These aliases
// keep the kinds.Quantity names the control plane uses.

// ErrQuantity: a string is not a resource quantity.
var ErrQuantity = apiv1.ErrQuantity

// Quantity is a parsed resource quantity (see apiv1.Quantity).
type Quantity = apiv1.Quantity

// Constructors and parsers of Quantity.
var (
	ParseQuantity     = apiv1.ParseQuantity
	MustParseQuantity = apiv1.MustParseQuantity
	NewMilliQuantity  = apiv1.NewMilliQuantity
	NewQuantity       = apiv1.NewQuantity
)
