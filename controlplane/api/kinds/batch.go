package kinds

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

func defaultJobSpec(s *apiv1.JobSpec) {
	if s.Completions == nil && s.Parallelism == nil {
		s.Completions = ptr[int32](1)
	}
	if s.Parallelism == nil {
		s.Parallelism = ptr[int32](1)
	}
	if s.BackoffLimit == nil {
		s.BackoffLimit = ptr[int32](6)
	}
	if s.CompletionMode == nil {
		s.CompletionMode = ptr("NonIndexed")
	}
	if s.Suspend == nil {
		s.Suspend = ptr(false)
	}
	if s.PodReplacementPolicy == nil {
		s.PodReplacementPolicy = ptr("TerminatingOrFailed")
	}
	if s.Template != nil {
		defaultPodSpec(s.Template.Spec)
	}
}

func validateJobSpec(s *apiv1.JobSpec, path string) FieldErrors {
	if s == nil {
		return FieldErrors{Required(path, "")}
	}
	errs := validateNonNegative32(path+".parallelism", s.Parallelism)
	errs = append(errs, validateNonNegative32(path+".completions", s.Completions)...)
	errs = append(errs, validateNonNegative32(path+".backoffLimit", s.BackoffLimit)...)
	errs = append(errs, validateNonNegative32(path+".ttlSecondsAfterFinished", s.TtlSecondsAfterFinished)...)
	if s.ActiveDeadlineSeconds != nil && *s.ActiveDeadlineSeconds <= 0 {
		errs = append(errs, Invalid(path+".activeDeadlineSeconds", *s.ActiveDeadlineSeconds, "must be greater than 0"))
	}
	if s.CompletionMode != nil {
		errs = append(errs, oneOf(path+".completionMode", *s.CompletionMode, "NonIndexed", "Indexed")...)
		if *s.CompletionMode == "Indexed" && s.Completions == nil {
			errs = append(errs, Required(path+".completions", "when completionMode is Indexed"))
		}
	}
	if s.GetManualSelector() {
		errs = append(errs, validateSelectorTemplate(s.GetSelector(), s.GetTemplate(), path)...)
	} else {
		errs = append(errs, validateLabelSelector(s.GetSelector(), path+".selector")...)
	}
	errs = append(errs, validatePodTemplate(s.GetTemplate(), path+".template", "OnFailure", "Never")...)
	errs = append(errs, validatePodFailurePolicy(s, path)...)
	return errs
}

// validatePodFailurePolicy follows Kubernetes: each rule names one action
// and exactly one of onExitCodes (In/NotIn, distinct values, no 0 for In)
// or onPodConditions, and the pods must not restart in place (Never).
func validatePodFailurePolicy(s *apiv1.JobSpec, path string) FieldErrors {
	pol := s.GetPodFailurePolicy()
	if pol == nil {
		return nil
	}
	path += ".podFailurePolicy"
	var errs FieldErrors
	if rp := s.GetTemplate().GetSpec().GetRestartPolicy(); rp != "Never" {
		errs = append(errs, Invalid(path, rp, "only supported with the pod template's restartPolicy Never"))
	}
	if len(pol.GetRules()) > 20 {
		errs = append(errs, Invalid(path+".rules", len(pol.GetRules()), "must have at most 20 rules"))
	}
	for i, r := range pol.GetRules() {
		rp := idx(path+".rules", i)
		errs = append(errs, oneOf(rp+".action", r.GetAction(), "FailJob", "Ignore", "Count", "FailIndex")...)
		if r.GetAction() == "FailIndex" && s.BackoffLimitPerIndex == nil {
			errs = append(errs, Invalid(rp+".action", r.GetAction(), "FailIndex needs spec.backoffLimitPerIndex"))
		}
		ec, pc := r.GetOnExitCodes(), r.GetOnPodConditions()
		if (ec == nil) == (len(pc) == 0) {
			errs = append(errs, Invalid(rp, "", "specify exactly one of onExitCodes and onPodConditions"))
		}
		if ec != nil {
			errs = append(errs, oneOf(rp+".onExitCodes.operator", ec.GetOperator(), "In", "NotIn")...)
			if len(ec.GetValues()) == 0 || len(ec.GetValues()) > 255 {
				errs = append(errs, Invalid(rp+".onExitCodes.values", len(ec.GetValues()), "must have 1 to 255 values"))
			}
			seen := map[int32]bool{}
			for j, v := range ec.GetValues() {
				vp := idx(rp+".onExitCodes.values", j)
				if seen[v] {
					errs = append(errs, Duplicate(vp, v))
				}
				seen[v] = true
				if v == 0 && ec.GetOperator() == "In" {
					errs = append(errs, Invalid(vp, v, "must not be 0 for the In operator"))
				}
			}
			if n := ec.ContainerName; n != nil && !containerNamed(s.GetTemplate().GetSpec(), *n) {
				errs = append(errs, Invalid(rp+".onExitCodes.containerName", *n, "must be one of the container or initContainer names in the pod template"))
			}
		}
		for j, c := range pc {
			cp := idx(rp+".onPodConditions", j)
			if c.GetType() == "" {
				errs = append(errs, Required(cp+".type", ""))
			}
			if c.GetStatus() != "" {
				errs = append(errs, oneOf(cp+".status", c.GetStatus(), "True", "False", "Unknown")...)
			}
		}
	}
	return errs
}

func containerNamed(s *apiv1.PodSpec, name string) bool {
	for _, c := range append(append([]*apiv1.Container(nil), s.GetInitContainers()...), s.GetContainers()...) {
		if c.GetName() == name {
			return true
		}
	}
	return false
}

var _ = define(Kind{
	Name: "Job", Plural: "jobs", Singular: "job", Group: "batch",
	APIVersions: []string{"batch/v1"}, Namespaced: true,
	newObject: func() Object { return &apiv1.Job{} },
	columns: []Column{{Name: "NAME"}, {Name: "STATUS"}, {Name: "COMPLETIONS"}, {Name: "DURATION"}, {Name: "AGE"},
		{Name: "CONTAINERS", Wide: true}, {Name: "IMAGES", Wide: true}, {Name: "SELECTOR", Wide: true}},
}, func(j *apiv1.Job) {
	if j.Spec == nil {
		j.Spec = &apiv1.JobSpec{}
	}
	defaultJobSpec(j.Spec)
}, func(j *apiv1.Job) FieldErrors {
	return validateJobSpec(j.GetSpec(), "spec")
}, func(j *apiv1.Job, now time.Time) []string {
	st := j.GetStatus()
	status := "Running"
	for _, c := range st.GetConditions() {
		if c.GetStatus() == "True" && (c.GetType() == "Complete" || c.GetType() == "Failed" || c.GetType() == "Suspended") {
			status = c.GetType()
		}
	}
	completions := strconv.Itoa(int(st.GetSucceeded())) + "/"
	if j.GetSpec() != nil && j.GetSpec().Completions != nil {
		completions += strconv.Itoa(int(j.GetSpec().GetCompletions()))
	} else {
		completions += "1"
	}
	duration := ""
	if start, err := time.Parse(time.RFC3339, st.GetStartTime()); err == nil {
		end := now
		if done, err := time.Parse(time.RFC3339, st.GetCompletionTime()); err == nil {
			end = done
		}
		duration = HumanDuration(end.Sub(start))
	}
	names, images := containerCells(j.GetSpec().GetTemplate())
	return []string{j.GetMetadata().GetName(), status, completions, duration, age(j.GetMetadata().GetCreationTimestamp(), now),
		names, images, SelectorString(j.GetSpec().GetSelector())}
}, Hooks[*apiv1.Job]{
	PodTemplate: func(o *apiv1.Job) *apiv1.PodTemplateSpec { return o.GetSpec().GetTemplate() },
})

var cronMacros = map[string]bool{"@yearly": true, "@annually": true, "@monthly": true, "@weekly": true, "@daily": true,
	"@midnight": true, "@hourly": true}

// ValidateSchedule checks a standard 5-field cron schedule or a macro (@hourly).
func ValidateSchedule(s string) error {
	s = strings.TrimSpace(s)
	if cronMacros[s] || strings.HasPrefix(s, "@every ") {
		return nil
	}
	fields := strings.Fields(s)
	if len(fields) != 5 {
		return fmt.Errorf("expected exactly 5 fields, found %d", len(fields))
	}
	limits := [5][2]int{{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 7}}
	for i, f := range fields {
		for _, part := range strings.Split(f, ",") {
			rng, step, hasStep := strings.Cut(part, "/")
			if hasStep {
				if n, err := strconv.Atoi(step); err != nil || n <= 0 {
					return fmt.Errorf("field %d: invalid step %q", i+1, step)
				}
			}
			if rng == "*" || rng == "?" {
				continue
			}
			lo, hi, isRange := strings.Cut(rng, "-")
			for _, v := range []string{lo, hi} {
				if v == "" && !isRange {
					continue
				}
				n, err := strconv.Atoi(v)
				if err != nil {
					if (i == 3 || i == 4) && len(v) == 3 {
						continue // JAN, MON …
					}
					return fmt.Errorf("field %d: invalid value %q", i+1, v)
				}
				if n < limits[i][0] || n > limits[i][1] {
					return fmt.Errorf("field %d: %d out of range %d-%d", i+1, n, limits[i][0], limits[i][1])
				}
			}
		}
	}
	return nil
}

var _ = define(Kind{
	Name: "CronJob", Plural: "cronjobs", Singular: "cronjob", ShortNames: []string{"cj"}, Group: "batch",
	APIVersions: []string{"batch/v1"}, Retired: map[string]string{"batch/v1beta1": "removed in Kubernetes 1.25", "batch/v2alpha1": "removed in Kubernetes 1.21"},
	Namespaced: true,
	newObject:  func() Object { return &apiv1.CronJob{} },
	nameCheck: func(s string) []string {
		if len(s) > 52 {
			return []string{"must be no more than 52 characters"}
		}
		return IsDNS1123Subdomain(s)
	},
	columns: []Column{{Name: "NAME"}, {Name: "SCHEDULE"}, {Name: "TIMEZONE"}, {Name: "SUSPEND"}, {Name: "ACTIVE"}, {Name: "LAST SCHEDULE"}, {Name: "AGE"},
		{Name: "CONTAINERS", Wide: true}, {Name: "IMAGES", Wide: true}},
}, func(c *apiv1.CronJob) {
	if c.Spec == nil {
		c.Spec = &apiv1.CronJobSpec{}
	}
	s := c.Spec
	if s.ConcurrencyPolicy == "" {
		s.ConcurrencyPolicy = "Allow"
	}
	if s.Suspend == nil {
		s.Suspend = ptr(false)
	}
	if s.SuccessfulJobsHistoryLimit == nil {
		s.SuccessfulJobsHistoryLimit = ptr[int32](3)
	}
	if s.FailedJobsHistoryLimit == nil {
		s.FailedJobsHistoryLimit = ptr[int32](1)
	}
	if s.JobTemplate != nil && s.JobTemplate.Spec != nil {
		defaultJobSpec(s.JobTemplate.Spec)
	}
}, func(c *apiv1.CronJob) FieldErrors {
	s := c.GetSpec()
	if s == nil {
		return FieldErrors{Required("spec", "")}
	}
	var errs FieldErrors
	if s.GetSchedule() == "" {
		errs = append(errs, Required("spec.schedule", ""))
	} else if err := ValidateSchedule(s.GetSchedule()); err != nil {
		errs = append(errs, Invalid("spec.schedule", s.GetSchedule(), "is not a valid cron schedule: "+err.Error()))
	}
	if tz := s.TimeZone; tz != nil {
		if _, err := time.LoadLocation(*tz); err != nil || *tz == "" || strings.EqualFold(*tz, "local") {
			errs = append(errs, Invalid("spec.timeZone", *tz, "unknown time zone"))
		}
	}
	errs = append(errs, oneOf("spec.concurrencyPolicy", s.GetConcurrencyPolicy(), "Allow", "Forbid", "Replace")...)
	errs = append(errs, validateNonNegative64("spec.startingDeadlineSeconds", s.StartingDeadlineSeconds)...)
	errs = append(errs, validateNonNegative32("spec.successfulJobsHistoryLimit", s.SuccessfulJobsHistoryLimit)...)
	errs = append(errs, validateNonNegative32("spec.failedJobsHistoryLimit", s.FailedJobsHistoryLimit)...)
	if s.GetJobTemplate() == nil {
		return append(errs, Required("spec.jobTemplate", ""))
	}
	return append(errs, validateJobSpec(s.GetJobTemplate().GetSpec(), "spec.jobTemplate.spec")...)
}, func(c *apiv1.CronJob, now time.Time) []string {
	last := "<none>"
	if c.GetStatus().GetLastScheduleTime() != "" {
		last = age(c.GetStatus().GetLastScheduleTime(), now)
	}
	tz := "<none>"
	if c.GetSpec() != nil && c.GetSpec().TimeZone != nil {
		tz = *c.GetSpec().TimeZone
	}
	names, images := containerCells(c.GetSpec().GetJobTemplate().GetSpec().GetTemplate())
	return []string{c.GetMetadata().GetName(), c.GetSpec().GetSchedule(), tz, strconv.FormatBool(c.GetSpec().GetSuspend()),
		strconv.Itoa(len(c.GetStatus().GetActive())), last, age(c.GetMetadata().GetCreationTimestamp(), now), names, images}
}, Hooks[*apiv1.CronJob]{
	PodTemplate: func(c *apiv1.CronJob) *apiv1.PodTemplateSpec {
		return c.GetSpec().GetJobTemplate().GetSpec().GetTemplate()
	},
})
