package main

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// validatePod runs the API server's pod validation rules that a mutation can touch.
//
// Real code (called, packaged in Debian):
//   - apimachinery/pkg/api/validation.ValidateObjectMeta: name, namespace, labels
//     (metav1 validation.ValidateLabels), annotations (ValidateAnnotations: qualified-name
//     keys and 256 KiB total), owner references, finalizers. It is what core's
//     ValidateObjectMeta (k8s.io/kubernetes pkg/apis/core/validation) delegates to.
//   - metav1 validation.ValidateLabels on spec.nodeSelector, as core's ValidatePodSpec does.
//   - metav1 validation.ValidateLabelName on node-selector requirement keys, util/validation
//     IsDNS1123Label on container names, api/equality.Semantic.DeepEqual for ephemeral
//     containers, and the scheduler's component-helpers nodeaffinity.NewNodeSelector parse.
//
// Re-stated (k8s.io/kubernetes pkg/apis/core/validation/validation.go is not packaged), each
// citing its upstream function: validateNodeSelectorRequirement's operator/values rules,
// validatePreferredSchedulingTerms' weight range, validateContainers' required image and
// unique names, ValidatePodEphemeralContainersUpdate's immutability of existing ones.
func validatePod(pod, oldPod *corev1.Pod, subresource string) []string {
	errs := field.ErrorList{}
	if subresource == "ephemeralcontainers" && oldPod != nil {
		errs = append(errs, validateEphemeralContainersUpdate(pod, oldPod)...)
		pod = stored(pod, oldPod, subresource)
	}
	meta := pod.ObjectMeta.DeepCopy()
	if meta.Name == "" && meta.GenerateName != "" {
		// names.SimpleNameGenerator (apiserver/pkg/storage/names) runs before validation:
		// generateName truncated to 58 characters plus 5 random ones.
		base := meta.GenerateName
		if len(base) > 58 {
			base = base[:58]
		}
		meta.Name = base + "x7k2q"
	}
	errs = append(errs, apimachineryvalidation.ValidateObjectMeta(meta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))...)
	spec := field.NewPath("spec")
	errs = append(errs, metav1validation.ValidateLabels(pod.Spec.NodeSelector, spec.Child("nodeSelector"))...)
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		errs = append(errs, validateNodeAffinity(a.NodeAffinity, spec.Child("affinity", "nodeAffinity"))...)
	}
	errs = append(errs, validateContainers(pod, spec)...)
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

// validateNodeAffinity: core validation validateNodeAffinity / validateNodeSelector /
// validateNodeSelectorTerm / validatePreferredSchedulingTerms.
func validateNodeAffinity(na *corev1.NodeAffinity, p *field.Path) field.ErrorList {
	errs := field.ErrorList{}
	if r := na.RequiredDuringSchedulingIgnoredDuringExecution; r != nil {
		rp := p.Child("requiredDuringSchedulingIgnoredDuringExecution")
		if len(r.NodeSelectorTerms) == 0 {
			errs = append(errs, field.Required(rp.Child("nodeSelectorTerms"), "must have at least one node selector term"))
		}
		for i, t := range r.NodeSelectorTerms {
			errs = append(errs, validateNodeSelectorTerm(t, rp.Child("nodeSelectorTerms").Index(i))...)
		}
		// The scheduler's own parse of the selector (component-helpers, real code).
		if _, err := nodeaffinity.NewNodeSelector(r); err != nil {
			errs = append(errs, field.Invalid(rp, "", "scheduler cannot parse: "+err.Error()))
		}
	}
	for i, t := range na.PreferredDuringSchedulingIgnoredDuringExecution {
		tp := p.Child("preferredDuringSchedulingIgnoredDuringExecution").Index(i)
		if t.Weight <= 0 || t.Weight > 100 {
			errs = append(errs, field.Invalid(tp.Child("weight"), t.Weight, "must be in the range 1-100"))
		}
		errs = append(errs, validateNodeSelectorTerm(t.Preference, tp.Child("preference"))...)
	}
	if len(na.PreferredDuringSchedulingIgnoredDuringExecution) > 0 {
		if _, err := nodeaffinity.NewPreferredSchedulingTerms(na.PreferredDuringSchedulingIgnoredDuringExecution); err != nil {
			errs = append(errs, field.Invalid(p.Child("preferredDuringSchedulingIgnoredDuringExecution"), "", "scheduler cannot parse: "+err.Error()))
		}
	}
	return errs
}

func validateNodeSelectorTerm(t corev1.NodeSelectorTerm, p *field.Path) field.ErrorList {
	errs := field.ErrorList{}
	for j, rq := range t.MatchExpressions {
		errs = append(errs, validateNodeSelectorRequirement(rq, p.Child("matchExpressions").Index(j))...)
	}
	for j, rq := range t.MatchFields {
		fp := p.Child("matchFields").Index(j)
		// validateNodeFieldSelectorRequirement: only metadata.name, In/NotIn, exactly one value.
		if rq.Key != "metadata.name" {
			errs = append(errs, field.Invalid(fp.Child("key"), rq.Key, "not a valid field selector key"))
		}
		if (rq.Operator != corev1.NodeSelectorOpIn && rq.Operator != corev1.NodeSelectorOpNotIn) || len(rq.Values) != 1 {
			errs = append(errs, field.Invalid(fp, rq.Operator, "must be In or NotIn with a single value"))
		}
	}
	return errs
}

// validateNodeSelectorRequirement (core validation): operator known, values as it demands,
// key a qualified name.
func validateNodeSelectorRequirement(rq corev1.NodeSelectorRequirement, p *field.Path) field.ErrorList {
	errs := field.ErrorList{}
	switch rq.Operator {
	case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
		if len(rq.Values) == 0 {
			errs = append(errs, field.Required(p.Child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
		}
	case corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist:
		if len(rq.Values) > 0 {
			errs = append(errs, field.Forbidden(p.Child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
		}
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if len(rq.Values) != 1 {
			errs = append(errs, field.Required(p.Child("values"), "must be specified single value when `operator` is 'Lt' or 'Gt'"))
		}
	default:
		errs = append(errs, field.Invalid(p.Child("operator"), rq.Operator, "not a valid selector operator"))
	}
	return append(errs, metav1validation.ValidateLabelName(rq.Key, p.Child("key"))...)
}

// validateContainers: core validation validateInitContainers / validateContainers /
// validateEphemeralContainers — names are DNS labels, unique across all three lists; an
// image is required and has no surrounding whitespace (validateContainerCommon).
func validateContainers(pod *corev1.Pod, spec *field.Path) field.ErrorList {
	errs := field.ErrorList{}
	seen := map[string]bool{}
	check := func(name, image string, p *field.Path) {
		for _, msg := range validation.IsDNS1123Label(name) {
			errs = append(errs, field.Invalid(p.Child("name"), name, msg))
		}
		if seen[name] {
			errs = append(errs, field.Duplicate(p.Child("name"), name))
		}
		seen[name] = true
		if image == "" {
			errs = append(errs, field.Required(p.Child("image"), ""))
		} else if len(image) != len(trimSpace(image)) {
			errs = append(errs, field.Invalid(p.Child("image"), image, "must not have leading or trailing whitespace"))
		}
	}
	for i, c := range pod.Spec.InitContainers {
		check(c.Name, c.Image, spec.Child("initContainers").Index(i))
	}
	for i, c := range pod.Spec.Containers {
		check(c.Name, c.Image, spec.Child("containers").Index(i))
	}
	for i, c := range pod.Spec.EphemeralContainers {
		check(c.Name, c.Image, spec.Child("ephemeralContainers").Index(i))
	}
	return errs
}

func trimSpace(s string) string {
	i, j := 0, len(s)
	for i < j && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	for j > i && (s[j-1] == ' ' || s[j-1] == '\t' || s[j-1] == '\n' || s[j-1] == '\r') {
		j--
	}
	return s[i:j]
}

// validateEphemeralContainersUpdate: core validation ValidatePodEphemeralContainersUpdate —
// "existing ephemeral containers %q may not be removed" / "... may not be changed".
func validateEphemeralContainersUpdate(pod, oldPod *corev1.Pod) field.ErrorList {
	errs := field.ErrorList{}
	p := field.NewPath("spec", "ephemeralContainers")
	byName := map[string]*corev1.EphemeralContainer{}
	for i := range pod.Spec.EphemeralContainers {
		byName[pod.Spec.EphemeralContainers[i].Name] = &pod.Spec.EphemeralContainers[i]
	}
	for _, old := range oldPod.Spec.EphemeralContainers {
		cur, ok := byName[old.Name]
		if !ok {
			errs = append(errs, field.Forbidden(p, fmt.Sprintf("existing ephemeral containers %q may not be removed\n", old.Name)))
		} else if !apiequality.Semantic.DeepEqual(old, *cur) {
			errs = append(errs, field.Forbidden(p, fmt.Sprintf("existing ephemeral containers %q may not be changed\n", old.Name)))
		}
	}
	return errs
}

// stored is what the registry keeps: for pods/ephemeralcontainers the strategy's
// PrepareForUpdate (k8s.io/kubernetes pkg/registry/core/pod/strategy.go,
// dropNonEphemeralContainerUpdates) takes the old pod and only the new ephemeral containers,
// so any other change a webhook made there is dropped.
func stored(pod, oldPod *corev1.Pod, subresource string) *corev1.Pod {
	if subresource != "ephemeralcontainers" || oldPod == nil {
		return pod
	}
	out := oldPod.DeepCopy()
	out.Spec.EphemeralContainers = pod.Spec.EphemeralContainers
	return out
}

// matchingNodes: the nodes whose labels satisfy the pod's nodeSelector and required node
// affinity, by the scheduler's own code (component-helpers nodeaffinity, what the NodeAffinity
// plugin runs). Taints are not considered: apparate does not touch tolerations.
func matchingNodes(pod *corev1.Pod, nodes []corev1.Node) []string {
	out := []string{}
	req := nodeaffinity.GetRequiredNodeAffinity(pod)
	for i := range nodes {
		if ok, err := req.Match(&nodes[i]); ok && err == nil {
			out = append(out, nodes[i].Name)
		}
	}
	return out
}
