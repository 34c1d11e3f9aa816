package main

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"

	admissionv1 "k8s.io/api/admission/v1"
	registrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A second mutating webhook, shaped like istio's sidecar injector, ordered after apparate's
// (configurations are called in name order): when it adds its containers, the real
// dispatcher reinvokes apparate's webhooks whose reinvocationPolicy is IfNeeded.
const sidecarConfigName = "zz-sidecar-injector"

func startSidecarInjector() (*httptest.Server, registrationv1.MutatingWebhookConfiguration) {
	srv := httptest.NewTLSServer(http.HandlerFunc(injectSidecar))
	caBundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	url := srv.URL + "/inject"
	fail := registrationv1.Fail
	none := registrationv1.SideEffectClassNone
	never := registrationv1.NeverReinvocationPolicy
	cfg := registrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: sidecarConfigName},
		Webhooks: []registrationv1.MutatingWebhook{{
			Name:                    "sidecar-injector.istio.io",
			ClientConfig:            registrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			Rules:                   []registrationv1.RuleWithOperations{{Operations: []registrationv1.OperationType{registrationv1.Create}, Rule: registrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			ReinvocationPolicy:      &never,
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"istio-injection": "enabled"}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "sidecar.istio.io/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
			}},
		}},
	}
	return srv, cfg
}

func injectSidecar(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	var pod corev1.Pod
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if err := json.Unmarshal(review.Request.Object.Raw, &pod); err == nil {
		has := false
		for _, c := range pod.Spec.Containers {
			has = has || c.Name == "istio-proxy"
		}
		if !has {
			ops := []map[string]interface{}{
				{"op": "add", "path": "/spec/containers/-", "value": corev1.Container{
					Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.22.1",
					Args: []string{"proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"},
				}},
			}
			if pod.Spec.InitContainers == nil {
				ops = append(ops, map[string]interface{}{"op": "add", "path": "/spec/initContainers", "value": []corev1.Container{}})
			}
			ops = append(ops, map[string]interface{}{"op": "add", "path": "/spec/initContainers/-", "value": corev1.Container{
				Name: "istio-init", Image: "docker.io/istio/proxyv2:1.22.1", Args: []string{"istio-iptables", "-p", "15001"},
			}})
			patch, _ := json.Marshal(ops)
			pt := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = patch, &pt
		}
	}
	review.Response = resp
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
}
