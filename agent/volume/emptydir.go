package volume

import (
	"fmt"
	"os"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// EmptyDir is a directory that lives as long as the pod; Medium "Memory"
// makes it a tmpfs of SizeLimit bytes (0: the tmpfs default).
type EmptyDir struct {
	Medium    string `json:"medium,omitempty"`
	SizeLimit int64  `json:"sizeLimit,omitempty"`
}

func init() {
	Register(Type{Name: "emptyDir", New: func() Source { return &EmptyDir{} },
		FromAPI: func(field string, v *apiv1.Volume, _ Resolver) (Source, error) {
			ed := v.GetEmptyDir()
			if ed == nil {
				return nil, nil
			}
			out := &EmptyDir{Medium: ed.GetMedium()}
			if s := ed.GetSizeLimit(); s != "" {
				q, err := apiv1.ParseQuantity(s)
				if err != nil {
					return nil, fmt.Errorf("%s.emptyDir.sizeLimit %q: %v", field, s, err)
				}
				out.SizeLimit = q.Value()
			}
			return out, nil
		}})
}

// VolumeType implements Source.
func (*EmptyDir) VolumeType() string { return "emptyDir" }

// Validate implements Source.
func (e *EmptyDir) Validate(field string) error {
	if e.Medium != "" && e.Medium != "Memory" {
		return fmt.Errorf("%s.medium %q: want \"\" or Memory", field, e.Medium)
	}
	if e.SizeLimit < 0 {
		return fmt.Errorf("%s.sizeLimit %d: negative", field, e.SizeLimit)
	}
	return nil
}

// Prepare implements Source.
func (e *EmptyDir) Prepare(dir string) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if e.Medium != "Memory" {
		return nil
	}
	opt := "mode=1777"
	if e.SizeLimit > 0 {
		opt += fmt.Sprintf(",size=%d", e.SizeLimit)
	}
	return mountTmpfsOnce(dir, opt)
}

// Mount implements Source.
func (*EmptyDir) Mount(dir string) (string, bool) { return dir, false }

// TearDown implements Source.
func (e *EmptyDir) TearDown(dir string) error {
	if e.Medium != "Memory" {
		return nil
	}
	return unmountIfMounted(dir)
}
