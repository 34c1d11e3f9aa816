package main

import (
	registrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The fake clientset stores objects as given; an API server defaults them first. A nil
// namespaceSelector/objectSelector would match nothing there, and the webhook would silently
// never be called. These are the API server's defaults, re-stated because their Go home,
// k8s.io/kubernetes/pkg/apis/admissionregistration/v1/defaults.go, is not packaged:
//   SetDefaults_MutatingWebhook: failurePolicy Fail, matchPolicy Equivalent,
//     namespaceSelector {}, objectSelector {}, timeoutSeconds 10, reinvocationPolicy Never
//   SetDefaults_Rule: scope "*"
//   SetDefaults_ServiceReference: port 443
func setDefaultsMutatingWebhookConfiguration(c *registrationv1.MutatingWebhookConfiguration) {
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		if w.FailurePolicy == nil {
			p := registrationv1.Fail
			w.FailurePolicy = &p
		}
		if w.MatchPolicy == nil {
			p := registrationv1.Equivalent
			w.MatchPolicy = &p
		}
		if w.NamespaceSelector == nil {
			w.NamespaceSelector = &metav1.LabelSelector{}
		}
		if w.ObjectSelector == nil {
			w.ObjectSelector = &metav1.LabelSelector{}
		}
		if w.TimeoutSeconds == nil {
			t := int32(10)
			w.TimeoutSeconds = &t
		}
		if w.ReinvocationPolicy == nil {
			p := registrationv1.NeverReinvocationPolicy
			w.ReinvocationPolicy = &p
		}
		for j := range w.Rules {
			if w.Rules[j].Scope == nil {
				s := registrationv1.AllScopes
				w.Rules[j].Scope = &s
			}
		}
		if s := w.ClientConfig.Service; s != nil && s.Port == nil {
			p := int32(443)
			s.Port = &p
		}
	}
}

// defaultedNamespace: every namespace carries kubernetes.io/metadata.name=<name>, which the
// chart's namespaceSelector relies on (k8s.io/kubernetes pkg/apis/core/v1/defaults.go
// SetDefaults_Namespace, GA since 1.22).
func defaultedNamespace(ns namespaceSpec) *corev1.Namespace {
	labels := map[string]string{}
	for k, v := range ns.Labels {
		labels[k] = v
	}
	labels[corev1.LabelMetadataName] = ns.Name
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.Name, Labels: labels}}
}
