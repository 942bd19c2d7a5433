package consensus

import (
	"strconv"

	storepb "github.com/skiffhq/skiff/proto/store/v1"
)

// fieldPath names what a validation error is about ("txn.success[2].put.key").
// It is formatted only when there is an error: the FSM validates every
// transaction it applies, and building the names eagerly was a percent of
// the control plane's CPU.
type fieldPath struct {
	name   string
	idx    int // name[idx] when >= 0
	suffix [2]string
}

func fieldOf(name string) fieldPath { return fieldPath{name: name, idx: -1} }

func (f fieldPath) at(i int) fieldPath { f.idx = i; return f }

func (f fieldPath) dot(s string) fieldPath {
	if f.suffix[0] == "" {
		f.suffix[0] = s
	} else {
		f.suffix[1] = s
	}
	return f
}

func (f fieldPath) String() string {
	s := f.name
	if f.idx >= 0 {
		s += "[" + strconv.Itoa(f.idx) + "]"
	}
	return s + f.suffix[0] + f.suffix[1]
}

func validateKey(field fieldPath, key []byte) error {
	if len(key) == 0 {
		return invalidf("%s: key is empty", field)
	}
	if len(key) > MaxKeyBytes {
		return invalidf("%s: key is %d bytes, limit %d", field, len(key), MaxKeyBytes)
	}
	return nil
}

func validatePut(field fieldPath, r *storepb.PutRequest) error {
	if r == nil {
		return invalidf("%s: missing put", field)
	}
	if err := validateKey(field.dot(".key"), r.Key); err != nil {
		return err
	}
	if len(r.Value) > MaxValueBytes {
		return invalidf("%s.value: %d bytes, limit %d", field, len(r.Value), MaxValueBytes)
	}
	if r.IfModRevision != nil && *r.IfModRevision < 0 {
		return invalidf("%s.if_mod_revision: %d is negative", field, *r.IfModRevision)
	}
	return nil
}

func validateDelete(field fieldPath, r *storepb.DeleteRequest) error {
	if r == nil {
		return invalidf("%s: missing delete", field)
	}
	if err := validateKey(field.dot(".key"), r.Key); err != nil {
		return err
	}
	if r.IfModRevision != nil && *r.IfModRevision < 0 {
		return invalidf("%s.if_mod_revision: %d is negative", field, *r.IfModRevision)
	}
	return nil
}

func validateRange(field fieldPath, r *storepb.RangeRequest) error {
	if r == nil {
		return invalidf("%s: missing range", field)
	}
	if !r.Prefix {
		if err := validateKey(field.dot(".key"), r.Key); err != nil {
			return err
		}
	} else if len(r.Key) > MaxKeyBytes {
		return invalidf("%s.key: prefix is %d bytes, limit %d", field, len(r.Key), MaxKeyBytes)
	}
	if r.Limit < 0 {
		return invalidf("%s.limit: %d is negative", field, r.Limit)
	}
	if r.Revision < 0 {
		return invalidf("%s.revision: %d is negative", field, r.Revision)
	}
	return nil
}

// validateTxn checks a transaction's shape. single marks the one-op form of a
// conditional Put/Delete; in a real Txn, preconditions belong in compares.
func validateTxn(t *storepb.TxnRequest, single bool) error {
	if t == nil {
		return invalidf("txn: missing")
	}
	if n := len(t.Compare) + len(t.Success) + len(t.Failure); n > MaxTxnOps {
		return invalidf("txn: %d compares and ops, limit %d", n, MaxTxnOps)
	}
	for i, c := range t.Compare {
		if c == nil {
			return invalidf("txn.compare[%d]: missing", i)
		}
		if err := validateKey(fieldOf("txn.compare").at(i).dot(".key"), c.Key); err != nil {
			return err
		}
		if _, ok := storepb.Compare_Target_name[int32(c.Target)]; !ok {
			return invalidf("txn.compare[%d].target: unknown %d", i, c.Target)
		}
		if _, ok := storepb.Compare_Result_name[int32(c.Result)]; !ok {
			return invalidf("txn.compare[%d].result: unknown %d", i, c.Result)
		}
	}
	for _, branch := range [...]struct {
		name string
		ops  []*storepb.RequestOp
	}{{"txn.success", t.Success}, {"txn.failure", t.Failure}} {
		for i, op := range branch.ops {
			field := fieldOf(branch.name).at(i)
			if op == nil {
				return invalidf("%s: missing", field)
			}
			var err error
			switch o := op.Op.(type) {
			case *storepb.RequestOp_Put:
				err = validatePut(field.dot(".put"), o.Put)
				if err == nil && !single && o.Put.IfModRevision != nil {
					err = invalidf("%s.put.if_mod_revision: not allowed in a txn, use a compare", field)
				}
			case *storepb.RequestOp_Delete:
				err = validateDelete(field.dot(".delete"), o.Delete)
				if err == nil && !single && o.Delete.IfModRevision != nil {
					err = invalidf("%s.delete.if_mod_revision: not allowed in a txn, use a compare", field)
				}
			case *storepb.RequestOp_Range:
				err = validateRange(field.dot(".range"), o.Range)
				if err == nil && o.Range.Revision != 0 {
					err = invalidf("%s.range.revision: a txn reads at its own revision", field)
				}
			default:
				err = invalidf("%s: empty op", field)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}
