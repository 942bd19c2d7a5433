package kinds

import (
	"strconv"
	"time"

	apiv1 "github.com/skiffhq/skiff/proto/api/v1"
)

// DefaultServiceAccount is the account every namespace has (made by the
// serviceaccount controller) and pods without spec.serviceAccountName run as.
const DefaultServiceAccount = "default"

var _ = define(Kind{
	Name: "ServiceAccount", Plural: "serviceaccounts", Singular: "serviceaccount", ShortNames: []string{"sa"},
	APIVersions: []string{"v1"}, Retired: retiredCore, Namespaced: true,
	newObject: func() Object { return &apiv1.ServiceAccount{} },
	columns:   []Column{{Name: "NAME"}, {Name: "SECRETS"}, {Name: "AGE"}},
}, nil, func(sa *apiv1.ServiceAccount) FieldErrors {
	var errs FieldErrors
	for i, s := range sa.GetSecrets() {
		if s.GetName() == "" {
			errs = append(errs, Required(idx("secrets", i)+".name", ""))
		}
	}
	for i, s := range sa.GetImagePullSecrets() {
		if s.GetName() == "" {
			errs = append(errs, Required(idx("imagePullSecrets", i)+".name", ""))
		}
	}
	return errs
}, func(sa *apiv1.ServiceAccount, now time.Time) []string {
	return []string{sa.GetMetadata().GetName(), strconv.Itoa(len(sa.GetSecrets())), age(sa.GetMetadata().GetCreationTimestamp(), now)}
})
