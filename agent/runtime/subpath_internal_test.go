package runtime

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/agent/probe"
)

func TestCheckSubPath(t *testing.T) {
	for _, ok := range []string{"", "a", "a/b", "a..b", "./x", "..x/y"} {
		if err := checkSubPath("f", ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"..", filepath.Join("..", "x"), "a/../../x", "a/..", "/etc"} {
		err := checkSubPath("containers[0].volumeMounts[1].subPath", bad)
		if !errors.Is(err, ErrSubPath) || !strings.Contains(err.Error(), "containers[0].volumeMounts[1].subPath") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	p := &Pod{UID: "u", Containers: []Container{{Name: "c", Image: "i", VolumeMounts: []VolumeMount{{Name: "v", MountPath: "/m", SubPath: filepath.Join("..", "x")}}}},
		Volumes: []Volume{{Name: "v", Source: nil}}}
	if err := p.Validate(); err == nil {
		t.Error("Validate accepted a '..' subPath")
	}
}

func TestExpandEnvRefs(t *testing.T) {
	env := []string{"POD=web-0", "NS=prod", "EMPTY="}
	for in, want := range map[string]string{
		"$(NS)/$(POD)": "prod/web-0", "$(MISSING)/x": "$(MISSING)/x", "$$(POD)": "$(POD)", "a$(EMPTY)b": "ab", "plain": "plain",
	} {
		if got := expandEnvRefs(in, env); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

func TestWithPodIP(t *testing.T) {
	env := withPodIP([]EnvVar{{Name: "A", Value: "x"}, {Name: "IP", FieldPath: FieldPodIP}, {Name: "IPS", FieldPath: FieldPodIPs}}, "10.1.2.3")
	if env[0].Value != "x" || env[1].Value != "10.1.2.3" || env[2].Value != "10.1.2.3" {
		t.Errorf("%+v", env)
	}
	if !needsPodIP(&Container{Env: env}) || needsPodIP(&Container{Env: env[:1]}) {
		t.Error("needsPodIP")
	}
}

func TestLifecycleValidate(t *testing.T) {
	base := func(lc *Lifecycle, init bool) *Pod {
		c := Container{Name: "c", Image: "i", Lifecycle: lc}
		p := &Pod{UID: "u", Containers: []Container{{Name: "app", Image: "i"}}}
		if init {
			p.InitContainers = []Container{c}
		} else {
			p.Containers = []Container{c}
		}
		return p
	}
	if err := base(&Lifecycle{PreStop: &LifecycleHandler{Sleep: &SleepAction{Seconds: 1}}}, false).Validate(); err != nil {
		t.Errorf("sleep preStop refused: %v", err)
	}
	for want, p := range map[string]*Pod{
		"containers[0].lifecycle.postStart: exactly one of exec, httpGet, sleep": base(&Lifecycle{PostStart: &LifecycleHandler{}}, false),
		"containers[0].lifecycle.preStop.exec.command: must not be empty":        base(&Lifecycle{PreStop: &LifecycleHandler{Exec: &probe.ExecAction{}}}, false),
		"initContainers[0].lifecycle: init containers may not have":              base(&Lifecycle{}, true),
	} {
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}
