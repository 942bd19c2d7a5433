package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiffhq/skiff/controlplane/api/manifest"
	"github.com/skiffhq/skiff/proto/client"
)

// waitPoll is how often `ctl wait` reads the objects again.
const waitPoll = 200 * time.Millisecond

// waitCondition is one --for: met reports whether obj (nil: gone) satisfies it.
type waitCondition struct {
	what string // for messages: "condition met", "deleted"
	met  func(doc map[string]any, gone bool) (bool, error)
}

func parseFor(s string) (waitCondition, error) {
	switch {
	case s == "delete":
		return waitCondition{what: "deleted", met: func(_ map[string]any, gone bool) (bool, error) { return gone, nil }}, nil
	case strings.HasPrefix(s, "condition="):
		spec := strings.TrimPrefix(s, "condition=")
		typ, want, ok := strings.Cut(spec, "=")
		if !ok {
			want = "True"
		}
		if typ == "" {
			return waitCondition{}, fmt.Errorf("--for %q: the condition type is empty", s)
		}
		return waitCondition{what: "condition met", met: func(doc map[string]any, gone bool) (bool, error) {
			if gone {
				return false, nil
			}
			status, _ := doc["status"].(map[string]any)
			conds, _ := status["conditions"].([]any)
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if t, _ := m["type"].(string); strings.EqualFold(t, typ) {
					v, _ := m["status"].(string)
					return strings.EqualFold(v, want), nil
				}
			}
			return false, nil
		}}, nil
	case strings.HasPrefix(s, "jsonpath="):
		spec := strings.TrimPrefix(s, "jsonpath=")
		expr, want, hasWant := spec, "", false
		if i := strings.LastIndex(spec, "}"); i >= 0 && i+1 < len(spec) && spec[i+1] == '=' {
			expr, want, hasWant = spec[:i+1], strings.Trim(spec[i+2:], `'"`), true
		}
		path, err := parseJSONPath(strings.Trim(expr, `'"`))
		if err != nil {
			return waitCondition{}, fmt.Errorf("--for %q: %w", s, err)
		}
		return waitCondition{what: "condition met", met: func(doc map[string]any, gone bool) (bool, error) {
			if gone {
				return false, nil
			}
			v, ok := path.eval(doc)
			if !ok {
				return false, nil
			}
			return !hasWant || scalarString(v) == want, nil
		}}, nil
	}
	return waitCondition{}, fmt.Errorf("--for %q: must be delete, condition=TYPE[=VALUE] or jsonpath='{PATH}'[=VALUE]", s)
}

// jsonPath is kubectl's JSONPath for wait, without filters: {.a.b[0].c}.
type jsonPath []any // string keys and int indexes

func parseJSONPath(s string) (jsonPath, error) {
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, fmt.Errorf("a JSONPath is written {.field.sub[0]}")
	}
	s = strings.TrimPrefix(s[1:len(s)-1], "$")
	var out jsonPath
	for len(s) > 0 {
		switch s[0] {
		case '.':
			s = s[1:]
			end := strings.IndexAny(s, ".[")
			if end < 0 {
				end = len(s)
			}
			if end == 0 {
				return nil, fmt.Errorf("empty field name in the JSONPath")
			}
			out = append(out, s[:end])
			s = s[end:]
		case '[':
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ in the JSONPath")
			}
			inner := s[1:end]
			if n, err := strconv.Atoi(inner); err == nil {
				out = append(out, n)
			} else {
				out = append(out, strings.Trim(inner, `'"`))
			}
			s = s[end+1:]
		default:
			return nil, fmt.Errorf("unexpected %q in the JSONPath (fields start with .)", s)
		}
	}
	return out, nil
}

func (p jsonPath) eval(doc any) (any, bool) {
	cur := doc
	for _, seg := range p {
		switch s := seg.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				return nil, false
			}
			if cur, ok = m[s]; !ok {
				return nil, false
			}
		case int:
			l, ok := cur.([]any)
			if !ok || s < 0 || s >= len(l) {
				return nil, false
			}
			cur = l[s]
		}
	}
	return cur, true
}

func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (o *options) waitCmd() *cobra.Command {
	var forFlag, selector string
	var all bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait (KIND NAME... | KIND/NAME... | KIND -l SELECTOR | KIND --all) --for=delete|condition=TYPE[=VALUE]|jsonpath='{PATH}'[=VALUE] [--timeout=30s]",
		Short: "Wait until objects meet a condition or are deleted",
		Example: `  ctl wait --for=condition=Ready pod/web
  ctl wait --for=jsonpath='{.status.phase}'=Running pod -l app=web
  ctl wait --for=delete deployment/web --timeout=60s`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: o.completeObjects,
		RunE: func(cmd *cobra.Command, args []string) error {
			cond, err := parseFor(forFlag)
			if err != nil {
				return err
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			ts, err := o.targets(ctx, c, args, selector, all)
			if err != nil {
				return err
			}
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				errs []error
			)
			for _, t := range ts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := o.waitOne(ctx, c, t, cond); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			return errors.Join(errs...)
		},
	}
	f := cmd.Flags()
	f.StringVar(&forFlag, "for", "", "delete, condition=TYPE[=VALUE] or jsonpath='{PATH}'[=VALUE]")
	f.StringVarP(&selector, "selector", "l", "", "wait for the objects this label selector matches")
	f.BoolVar(&all, "all", false, "wait for every object of the kind in the namespace")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

// waitOne polls one object until cond holds or ctx ends.
func (o *options) waitOne(ctx context.Context, c *client.Client, t target, cond waitCondition) error {
	what := resourceName(t.kind, t.name)
	for {
		rctx, cancel := o.ctx(ctx)
		obj, err := o.getObject(rctx, c, t)
		cancel()
		var doc map[string]any
		gone := client.IsNotFound(err)
		switch {
		case err == nil:
			b, merr := manifest.MarshalJSON(obj)
			if merr != nil {
				return merr
			}
			if merr := json.Unmarshal(b, &doc); merr != nil {
				return merr
			}
		case gone:
		case ctx.Err() != nil:
		case client.IsUnavailable(err):
		default:
			return err
		}
		if err == nil || gone {
			met, cerr := cond.met(doc, gone)
			if cerr != nil {
				return cerr
			}
			if met {
				fmt.Fprintf(o.streams.Out, "%s %s\n", what, cond.what)
				return nil
			}
			if gone && cond.what != "deleted" {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for the condition on %s", t.kind.Plural+"/"+t.name)
		case <-time.After(waitPoll):
		}
	}
}
