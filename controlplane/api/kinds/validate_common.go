package kinds

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// The names and labels every object carries are checked by hand (see
// isDNS1123Label and the others below, each equal to the regular expression
// in its comment, which validate_common_test.go checks): the regexp engine
// was a percent of the API server's CPU in the scheduler benchmark.
var (
	dns1035LabelRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	ianaSvcNameRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	envVarNameRE   = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
	configKeyRE    = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	percentRE      = regexp.MustCompile(`^[0-9]+%$`)
)

// IsDNS1123Label checks an RFC 1123 label (namespace names, container names).
func IsDNS1123Label(s string) []string {
	var msgs []string
	if len(s) > 63 {
		msgs = append(msgs, "must be no more than 63 characters")
	}
	if !isDNS1123Label(s) {
		msgs = append(msgs, "must be a lowercase RFC 1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit")
	}
	return msgs
}

// IsDNS1123Subdomain checks an RFC 1123 subdomain (most object names).
func IsDNS1123Subdomain(s string) []string {
	var msgs []string
	if len(s) > 253 {
		msgs = append(msgs, "must be no more than 253 characters")
	}
	if !isDNS1123Subdomain(s) {
		msgs = append(msgs, "must be a lowercase RFC 1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit")
	}
	return msgs
}

// IsDNS1035Label checks an RFC 1035 label (Service names: must start with a letter).
func IsDNS1035Label(s string) []string {
	var msgs []string
	if len(s) > 63 {
		msgs = append(msgs, "must be no more than 63 characters")
	}
	if !dns1035LabelRE.MatchString(s) {
		msgs = append(msgs, "must be a lowercase RFC 1035 label: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit")
	}
	return msgs
}

// IsQualifiedName checks a label or annotation key: [prefix/]name where the
// prefix is a DNS subdomain and the name at most 63 characters.
func IsQualifiedName(s string) []string {
	name := s
	if i := strings.LastIndex(s, "/"); i >= 0 {
		prefix := s[:i]
		name = s[i+1:]
		if prefix == "" {
			return []string{"prefix part must be non-empty"}
		}
		if m := IsDNS1123Subdomain(prefix); m != nil {
			return []string{"prefix part " + m[0]}
		}
	}
	if name == "" {
		return []string{"name part must be non-empty"}
	}
	if len(name) > 63 {
		return []string{"name part must be no more than 63 characters"}
	}
	if !isQualifiedName(name) {
		return []string{"name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"}
	}
	return nil
}

// IsLabelValue checks a label value: empty, or up to 63 characters of
// alphanumerics, '-', '_', '.', starting and ending alphanumeric.
func IsLabelValue(s string) []string {
	if len(s) > 63 {
		return []string{"must be no more than 63 characters"}
	}
	if s != "" && !isQualifiedName(s) {
		return []string{"a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"}
	}
	return nil
}

// IsPortName checks an IANA service name (named ports).
func IsPortName(s string) []string {
	switch {
	case len(s) > 15:
		return []string{"must be no more than 15 characters"}
	case !ianaSvcNameRE.MatchString(s):
		return []string{"must contain only lowercase alphanumerics and '-', starting and ending with an alphanumeric"}
	case strings.Contains(s, "--"):
		return []string{"must not contain consecutive hyphens"}
	case strings.Trim(s, "0123456789-") == "":
		return []string{"must contain at least one letter"}
	}
	return nil
}

func check(path string, value string, msgs []string) FieldErrors {
	var errs FieldErrors
	for _, m := range msgs {
		errs = append(errs, Invalid(path, value, m))
	}
	return errs
}

func validateObjectMeta(md *apiv1.ObjectMeta, namespaced bool, nameCheck func(string) []string, path string) FieldErrors {
	var errs FieldErrors
	if md == nil {
		return FieldErrors{Required(path+".name", "name or generateName is required")}
	}
	switch {
	case md.GetName() != "":
		errs = append(errs, check(path+".name", md.GetName(), nameCheck(md.GetName()))...)
	case md.GetGenerateName() != "":
		errs = append(errs, check(path+".generateName", md.GetGenerateName(), nameCheck(strings.TrimSuffix(md.GetGenerateName(), "-")+"x"))...)
	default:
		errs = append(errs, Required(path+".name", "name or generateName is required"))
	}
	if namespaced {
		if md.GetNamespace() != "" {
			errs = append(errs, check(path+".namespace", md.GetNamespace(), IsDNS1123Label(md.GetNamespace()))...)
		}
	} else if md.GetNamespace() != "" {
		errs = append(errs, Forbidden(path+".namespace", "not allowed on a cluster-scoped kind"))
	}
	errs = append(errs, validateLabels(md.GetLabels(), path+".labels")...)
	total := 0
	for k, v := range md.GetAnnotations() {
		errs = append(errs, check(key(path+".annotations", k), k, IsQualifiedName(strings.ToLower(k)))...)
		total += len(k) + len(v)
	}
	if total > 256*1024 {
		errs = append(errs, Invalid(path+".annotations", fmt.Sprintf("%d bytes", total), "must have at most 262144 bytes"))
	}
	if md.DeletionGracePeriodSeconds != nil && *md.DeletionGracePeriodSeconds < 0 {
		errs = append(errs, Invalid(path+".deletionGracePeriodSeconds", md.DeletionGracePeriodSeconds, "must be greater than or equal to 0"))
	}
	for i, f := range md.GetFinalizers() {
		errs = append(errs, check(idx(path+".finalizers", i), f, IsQualifiedName(f))...)
	}
	for i, o := range md.GetOwnerReferences() {
		p := idx(path+".ownerReferences", i)
		if o.GetApiVersion() == "" {
			errs = append(errs, Required(p+".apiVersion", ""))
		}
		if o.GetKind() == "" {
			errs = append(errs, Required(p+".kind", ""))
		}
		if o.GetName() == "" {
			errs = append(errs, Required(p+".name", ""))
		}
		if o.GetUid() == "" {
			errs = append(errs, Required(p+".uid", ""))
		}
	}
	return errs
}

func validateLabels(labels map[string]string, path string) FieldErrors {
	var errs FieldErrors
	for _, k := range sortedKeys(labels) {
		v := labels[k]
		errs = append(errs, check(key(path, k), k, IsQualifiedName(k))...)
		errs = append(errs, check(key(path, k), v, IsLabelValue(v))...)
	}
	return errs
}

var selectorOps = []string{"In", "NotIn", "Exists", "DoesNotExist"}

func validateLabelSelector(sel *apiv1.LabelSelector, path string) FieldErrors {
	if sel == nil {
		return nil
	}
	errs := validateLabels(sel.GetMatchLabels(), path+".matchLabels")
	for i, r := range sel.GetMatchExpressions() {
		p := idx(path+".matchExpressions", i)
		errs = append(errs, check(p+".key", r.GetKey(), IsQualifiedName(r.GetKey()))...)
		switch r.GetOperator() {
		case "In", "NotIn":
			if len(r.GetValues()) == 0 {
				errs = append(errs, Required(p+".values", "must be specified when operator is In or NotIn"))
			}
		case "Exists", "DoesNotExist":
			if len(r.GetValues()) > 0 {
				errs = append(errs, Forbidden(p+".values", "may not be specified when operator is Exists or DoesNotExist"))
			}
		default:
			errs = append(errs, NotSupported(p+".operator", r.GetOperator(), selectorOps))
		}
		for j, v := range r.GetValues() {
			errs = append(errs, check(idx(p+".values", j), v, IsLabelValue(v))...)
		}
	}
	return errs
}

// SelectorMatches reports whether labels satisfy a LabelSelector. A nil
// selector matches nothing; an empty one matches everything.
func SelectorMatches(sel *apiv1.LabelSelector, labels map[string]string) bool {
	if sel == nil {
		return false
	}
	for k, v := range sel.GetMatchLabels() {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range sel.GetMatchExpressions() {
		got, ok := labels[r.GetKey()]
		in := false
		for _, v := range r.GetValues() {
			if ok && got == v {
				in = true
			}
		}
		switch r.GetOperator() {
		case "In":
			if !in {
				return false
			}
		case "NotIn":
			if in {
				return false
			}
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// SelectorString renders a selector as in kubectl ("app=web,tier in (a,b)").
func SelectorString(sel *apiv1.LabelSelector) string {
	if sel == nil {
		return "<none>"
	}
	var parts []string
	for _, k := range sortedKeys(sel.GetMatchLabels()) {
		parts = append(parts, k+"="+sel.GetMatchLabels()[k])
	}
	for _, r := range sel.GetMatchExpressions() {
		switch r.GetOperator() {
		case "In", "NotIn":
			parts = append(parts, fmt.Sprintf("%s %s (%s)", r.GetKey(), strings.ToLower(r.GetOperator()), strings.Join(r.GetValues(), ",")))
		case "Exists":
			parts = append(parts, r.GetKey())
		case "DoesNotExist":
			parts = append(parts, "!"+r.GetKey())
		}
	}
	if len(parts) == 0 {
		return "<none>"
	}
	return strings.Join(parts, ",")
}

// validatePort checks a port number 1-65535.
func validatePort(path string, port int32) FieldErrors {
	if port < 1 || port > 65535 {
		return FieldErrors{Invalid(path, port, "must be 1-65535")}
	}
	return nil
}

// validateIntOrStringPort checks a port given as a number or an IANA name.
func validateIntOrStringPort(path, port string) FieldErrors {
	if port == "" {
		return FieldErrors{Required(path, "")}
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 1 || n > 65535 {
			return FieldErrors{Invalid(path, n, "must be 1-65535")}
		}
		return nil
	}
	return check(path, port, IsPortName(port))
}

// IntOrPercent resolves an int-or-string like maxSurge ("25%" or "1")
// against total; roundUp picks ceiling for percentages (maxSurge) or floor
// (maxUnavailable), as Kubernetes does.
func IntOrPercent(v string, total int, roundUp bool) (int, error) {
	if strings.HasSuffix(v, "%") {
		p, err := strconv.Atoi(strings.TrimSuffix(v, "%"))
		if err != nil {
			return 0, fmt.Errorf("invalid percentage %q: %w", v, err)
		}
		if roundUp {
			return (p*total + 99) / 100, nil
		}
		return p * total / 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("invalid int-or-percent %q: %w", v, err)
	}
	return n, nil
}

func validateIntOrPercent(path, v string) FieldErrors {
	if v == "" {
		return nil
	}
	if percentRE.MatchString(v) {
		p, _ := strconv.Atoi(strings.TrimSuffix(v, "%"))
		if p > 100 {
			return FieldErrors{Invalid(path, v, "must not be greater than 100%")}
		}
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return FieldErrors{Invalid(path, v, "must be an integer or a percentage (e.g. 25%)")}
	}
	if n < 0 {
		return FieldErrors{Invalid(path, n, "must be greater than or equal to 0")}
	}
	return nil
}

func isZeroIntOrPercent(v string) bool { return v == "" || v == "0" || v == "0%" }

func validateNonNegative32(path string, v *int32) FieldErrors {
	if v != nil && *v < 0 {
		return FieldErrors{Invalid(path, *v, "must be greater than or equal to 0")}
	}
	return nil
}

func validateNonNegative64(path string, v *int64) FieldErrors {
	if v != nil && *v < 0 {
		return FieldErrors{Invalid(path, *v, "must be greater than or equal to 0")}
	}
	return nil
}

func validateIP(path, s string) FieldErrors {
	if _, err := netip.ParseAddr(s); err != nil {
		return FieldErrors{Invalid(path, s, "must be a valid IP address")}
	}
	return nil
}

func oneOf(path, v string, allowed ...string) FieldErrors {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	if v == "" {
		return FieldErrors{Required(path, "must be one of "+strings.Join(allowed, ", "))}
	}
	return FieldErrors{NotSupported(path, v, allowed)}
}

// validateQuantities checks a map of resource quantities; they must parse and
// be non-negative.
func validateQuantities(m map[string]string, path string) FieldErrors {
	var errs FieldErrors
	for _, name := range sortedKeys(m) {
		p := key(path, name)
		errs = append(errs, check(p, name, IsQualifiedName(name))...)
		errs = append(errs, validateQuantity(p, m[name])...)
	}
	return errs
}

func validateQuantity(path, v string) FieldErrors {
	if problem := quantityProblem(v); problem != "" {
		return FieldErrors{Invalid(path, v, problem)}
	}
	return nil
}

// quantityProblem says what is wrong with a resource quantity, "" if
// nothing: callers on hot paths build the field path only then.
func quantityProblem(v string) string {
	q, err := ParseQuantity(v)
	if err != nil {
		return "must be a quantity like 500m, 0.5, 128Mi or 1G"
	}
	if q.Sign() < 0 {
		return "must be greater than or equal to 0"
	}
	return ""
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func isAlnum(c byte) bool { return isLowerAlnum(c) || 'A' <= c && c <= 'Z' }

// isDNS1123Label: ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$
func isDNS1123Label(s string) bool {
	if s == "" || !isLowerAlnum(s[0]) || !isLowerAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if !isLowerAlnum(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

// isDNS1123Subdomain: DNS-1123 labels joined by dots,
// ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$
func isDNS1123Subdomain(s string) bool {
	for {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			return isDNS1123Label(s)
		}
		if !isDNS1123Label(s[:i]) {
			return false
		}
		s = s[i+1:]
	}
}

// isQualifiedName: ^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$
func isQualifiedName(s string) bool {
	if s == "" || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}
