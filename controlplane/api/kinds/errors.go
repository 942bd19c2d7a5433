package kinds

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ErrorType classifies a FieldError, like Kubernetes' field.ErrorType.
type ErrorType string

// Error types.
const (
	ErrorRequired     ErrorType = "Required"
	ErrorInvalid      ErrorType = "Invalid"
	ErrorNotSupported ErrorType = "NotSupported"
	ErrorDuplicate    ErrorType = "Duplicate"
	ErrorForbidden    ErrorType = "Forbidden"
)

// FieldError is one validation failure: the full field path
// ("spec.template.spec.containers[0].ports[0].containerPort"), the offending
// value and what is wrong with it.
type FieldError struct {
	Type   ErrorType
	Path   string
	Value  any
	Detail string
}

// Error renders "path: value detail", e.g.
// "spec.template.spec.containers[0].ports[0].containerPort: 70000 must be 1-65535".
func (e *FieldError) Error() string {
	switch e.Type {
	case ErrorRequired:
		if e.Detail != "" {
			return e.Path + ": required value: " + e.Detail
		}
		return e.Path + ": required value"
	case ErrorForbidden:
		return e.Path + ": forbidden: " + e.Detail
	}
	return e.Path + ": " + formatValue(e.Value) + " " + e.Detail
}

func formatValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case nil:
		return "null"
	case *int32:
		if x == nil {
			return "null"
		}
		return strconv.Itoa(int(*x))
	case *int64:
		if x == nil {
			return "null"
		}
		return strconv.FormatInt(*x, 10)
	}
	return fmt.Sprint(v)
}

// FieldErrors is a list of field errors; nil means valid.
type FieldErrors []*FieldError

// Error joins the errors, one per line.
func (es FieldErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Err returns es as an error, or nil when empty (a nil FieldErrors in an
// error interface would be non-nil).
func (es FieldErrors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Required reports a missing value.
func Required(path, detail string) *FieldError {
	return &FieldError{Type: ErrorRequired, Path: path, Detail: detail}
}

// Invalid reports a bad value.
func Invalid(path string, value any, detail string) *FieldError {
	return &FieldError{Type: ErrorInvalid, Path: path, Value: value, Detail: detail}
}

// NotSupported reports a value outside a fixed set.
func NotSupported(path string, value any, allowed []string) *FieldError {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = strconv.Quote(a)
	}
	return &FieldError{Type: ErrorNotSupported, Path: path, Value: value,
		Detail: "not supported: must be one of " + strings.Join(q, ", ")}
}

// Duplicate reports a repeated value that must be unique.
func Duplicate(path string, value any) *FieldError {
	return &FieldError{Type: ErrorDuplicate, Path: path, Value: value, Detail: "is a duplicate"}
}

// Forbidden reports a field that may not be set here.
func Forbidden(path, detail string) *FieldError {
	return &FieldError{Type: ErrorForbidden, Path: path, Detail: detail}
}

// idx and key build paths: idx("spec.ports", 0) = "spec.ports[0]",
// key("metadata.labels", "app") = "metadata.labels[app]".
func idx(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }
func key(path, k string) string     { return path + "[" + k + "]" }

// sortErrors orders errors by path so output is deterministic (several
// validators iterate maps).
func sortErrors(es FieldErrors) {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Path < es[j].Path })
}
