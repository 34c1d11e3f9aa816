// Command admission-driver admits pods through kube-apiserver's own mutating webhook
// admission plugin (k8s.io/apiserver/pkg/admission/plugin/webhook/mutating, built from
// Debian's packaged sources) and then checks the result with the API server's validation
// and the scheduler's node-affinity code where those are packaged (validate.go says which
// part is real and which is a cited re-statement).
//
// Wiring follows upstream's plugin_test.go, but through admission.Plugins.NewFromPlugins,
// the constructor kube-apiserver uses, so the chain has the real reinvocation handler.
//
// Protocol: one JSON request per stdin line, one JSON answer per stdout line (same order).
//
//	{"id":"x","op":"admit","operation":"CREATE","subresource":"","namespace":"shop","pod":{..},"oldPod":{..}}
//	{"id":"x","op":"check","pod":{..},"oldPod":{..},"subresource":""}   (validation + nodes only)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	registrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/mutating"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/authentication/user"
	apiserverapi "k8s.io/apiserver/pkg/apis/apiserver"
	apiserverapiv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	apiserverapiv1alpha1 "k8s.io/apiserver/pkg/apis/apiserver/v1alpha1"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	fakeclientset "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
)

type namespaceSpec struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

type request struct {
	ID          string          `json:"id"`
	Op          string          `json:"op"`
	Operation   string          `json:"operation"`
	Subresource string          `json:"subresource"`
	Namespace   string          `json:"namespace"`
	DryRun      bool            `json:"dryRun"`
	Pod         json.RawMessage `json:"pod"`
	OldPod      json.RawMessage `json:"oldPod"`
}

// webhookCall is what the real dispatcher recorded about one webhook invocation (its
// audit annotations mutation.webhook.admission.k8s.io/… and patch.webhook.admission.k8s.io/…).
type webhookCall struct {
	Key           string          `json:"key"`
	Configuration string          `json:"configuration"`
	Webhook       string          `json:"webhook"`
	Mutated       bool            `json:"mutated"`
	FailedOpen    bool            `json:"failedOpen"`
	Patch         json.RawMessage `json:"patch,omitempty"`
}

type answer struct {
	ID          string        `json:"id"`
	Allowed     bool          `json:"allowed"`
	Error       string        `json:"error,omitempty"`
	ErrorCode   int32         `json:"errorCode,omitempty"`
	PatchedPod  *corev1.Pod   `json:"patchedPod,omitempty"`
	Calls       []webhookCall `json:"webhookCalls"`
	Validation  []string      `json:"validationErrors"`
	NodesBefore []string      `json:"nodesBefore"`
	NodesAfter  []string      `json:"nodesAfter"`
	ElapsedMs   int64         `json:"elapsedMs"`
}

// staticServices resolves "namespace/name:port" to a loopback URL, as the API server's
// endpoint resolver would resolve a Service to one of its pods.
type staticServices map[string]*url.URL

func (s staticServices) ResolveEndpoint(namespace, name string, port int32) (*url.URL, error) {
	u, ok := s[fmt.Sprintf("%s/%s:%d", namespace, name, port)]
	if !ok {
		return nil, fmt.Errorf("service %s/%s port %d: no endpoints (not given to the driver)", namespace, name, port)
	}
	c := *u
	return &c, nil
}

// noCredentials: the API server sends no client certificate to this webhook; the server's
// CA comes from the webhook configuration's caBundle (webhookutil.ClientManager adds it).
type noCredentials struct{}

func (noCredentials) ClientConfigFor(string) (*rest.Config, error) { return &rest.Config{}, nil }
func (noCredentials) ClientConfigForService(string, string, int) (*rest.Config, error) {
	return &rest.Config{}, nil
}

// initializer gives the plugin what kube-apiserver's webhook and generic initializers give it.
type initializer struct {
	// credentials: keep the resolver the plugin built from its configuration (the
	// AdmissionConfiguration's kubeconfig), as kube-apiserver does; otherwise none.
	credentials bool
	services    staticServices
	client   kubernetes.Interface
	factory  informers.SharedInformerFactory
}

func (i initializer) Initialize(p admission.Interface) {
	type wiring interface {
		SetAuthenticationInfoResolverWrapper(webhookutil.AuthenticationInfoResolverWrapper)
		SetServiceResolver(webhookutil.ServiceResolver)
		SetExternalKubeClientSet(kubernetes.Interface)
		SetExternalKubeInformerFactory(informers.SharedInformerFactory)
	}
	if w, ok := p.(wiring); ok {
		w.SetAuthenticationInfoResolverWrapper(func(fromConfig webhookutil.AuthenticationInfoResolver) webhookutil.AuthenticationInfoResolver {
			if i.credentials {
				return fromConfig
			}
			return noCredentials{}
		})
		w.SetServiceResolver(i.services)
		w.SetExternalKubeClientSet(i.client)
		w.SetExternalKubeInformerFactory(i.factory)
	}
}

type noConfig struct{}

func (noConfig) ConfigFor(string) (io.Reader, error) { return nil, nil }

// recordingAttributes keeps the audit annotations the dispatcher writes, as upstream's
// webhooktesting.FakeAttributes does.
type recordingAttributes struct {
	admission.Attributes
	mu          sync.Mutex
	annotations map[string]string
}

func (r *recordingAttributes) AddAnnotation(k, v string) error {
	return r.AddAnnotationWithLevel(k, v, auditinternal.LevelMetadata)
}

func (r *recordingAttributes) AddAnnotationWithLevel(k, v string, level auditinternal.Level) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.Attributes.AddAnnotationWithLevel(k, v, level); err != nil {
		return err
	}
	r.annotations[k] = v
	return nil
}

func main() {
	configsFile := flag.String("webhooks", "", "JSON array of MutatingWebhookConfiguration objects (as rendered by helm template)")
	namespacesFile := flag.String("namespaces", "", "JSON array of {name, labels}")
	nodesFile := flag.String("nodes", "", "JSON array of Node objects the scheduler could choose from")
	sidecar := flag.Bool("sidecar-injector", false, "also run an istio-like sidecar injector webhook, ordered after the others")
	admissionConfig := flag.String("admission-config", "", "an AdmissionConfiguration file, as kube-apiserver's --admission-control-config-file (webhook client credentials from its kubeconfig)")
	var services multiFlag
	flag.Var(&services, "service", "namespace/name:port=https://127.0.0.1:PORT (repeatable)")
	flag.Parse()

	if err := run(*configsFile, *namespacesFile, *nodesFile, services, *sidecar, *admissionConfig); err != nil {
		fmt.Fprintln(os.Stderr, "admission-driver:", err)
		os.Exit(1)
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func readJSON(path string, into interface{}) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

func run(configsFile, namespacesFile, nodesFile string, serviceFlags []string, sidecar bool, admissionConfig string) error {
	var configs []registrationv1.MutatingWebhookConfiguration
	if err := readJSON(configsFile, &configs); err != nil {
		return fmt.Errorf("--webhooks: %w", err)
	}
	if len(configs) == 0 {
		return errors.New("--webhooks: no MutatingWebhookConfiguration given")
	}
	var nss []namespaceSpec
	if err := readJSON(namespacesFile, &nss); err != nil {
		return fmt.Errorf("--namespaces: %w", err)
	}
	var nodes []corev1.Node
	if err := readJSON(nodesFile, &nodes); err != nil {
		return fmt.Errorf("--nodes: %w", err)
	}
	services := staticServices{}
	for _, s := range serviceFlags {
		k, v, ok := strings.Cut(s, "=")
		u, err := url.Parse(v)
		if !ok || err != nil {
			return fmt.Errorf("--service %q: want namespace/name:port=URL", s)
		}
		services[k] = u
	}

	if sidecar {
		srv, cfg := startSidecarInjector()
		defer srv.Close()
		configs = append(configs, cfg)
	}
	objs := []runtime.Object{}
	for _, ns := range nss {
		objs = append(objs, defaultedNamespace(ns))
	}
	for i := range configs {
		c := configs[i]
		setDefaultsMutatingWebhookConfiguration(&c)
		objs = append(objs, &c)
	}
	client := fakeclientset.NewSimpleClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)

	plugins := admission.NewPlugins()
	mutating.Register(plugins)
	var pluginConfig admission.ConfigProvider = noConfig{}
	if admissionConfig != "" {
		// Read as kube-apiserver reads --admission-control-config-file (server/options/admission.go).
		configScheme := runtime.NewScheme()
		for _, add := range []func(*runtime.Scheme) error{apiserverapi.AddToScheme, apiserverapiv1alpha1.AddToScheme, apiserverapiv1.AddToScheme} {
			if err := add(configScheme); err != nil {
				return err
			}
		}
		p, err := admission.ReadAdmissionConfiguration([]string{mutating.PluginName}, admissionConfig, configScheme)
		if err != nil {
			return fmt.Errorf("--admission-config: %w", err)
		}
		pluginConfig = p
	}
	chain, err := plugins.NewFromPlugins([]string{mutating.PluginName}, pluginConfig, initializer{admissionConfig != "", services, client, factory}, nil)
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	mutator := chain.(admission.MutationInterface)

	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return err
	}
	objectInterfaces := admission.NewObjectInterfacesFromScheme(scheme)

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for in.Scan() {
		line := in.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var req request
		var ans answer
		if err := json.Unmarshal(line, &req); err != nil {
			ans = answer{Error: "bad request line: " + err.Error()}
		} else {
			ans = handle(req, mutator, objectInterfaces, nodes)
		}
		if err := enc.Encode(ans); err != nil {
			return err
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return in.Err()
}

func decodePod(raw json.RawMessage) (*corev1.Pod, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(raw, pod); err != nil {
		return nil, err
	}
	pod.APIVersion, pod.Kind = "v1", "Pod"
	return pod, nil
}

var podGVK = corev1.SchemeGroupVersion.WithKind("Pod")
var podGVR = corev1.SchemeGroupVersion.WithResource("pods")

func handle(req request, mutator admission.MutationInterface, o admission.ObjectInterfaces, nodes []corev1.Node) answer {
	ans := answer{ID: req.ID, Calls: []webhookCall{}, Validation: []string{}}
	pod, err := decodePod(req.Pod)
	if err == nil && pod == nil {
		err = errors.New("no pod")
	}
	if err != nil {
		ans.Error = "pod: " + fmt.Sprint(err)
		return ans
	}
	oldPod, err := decodePod(req.OldPod)
	if err != nil {
		ans.Error = "oldPod: " + err.Error()
		return ans
	}
	ans.NodesBefore = matchingNodes(pod, nodes)
	if req.Op == "check" {
		ans.Allowed = true
		ans.PatchedPod = pod
		ans.Validation = validatePod(pod, oldPod, req.Subresource)
		ans.NodesAfter = ans.NodesBefore
		return ans
	}

	ns := req.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	// The API server fills the namespace from the request before admission
	// (rest.EnsureObjectNamespaceMatchesRequestNamespace).
	pod.Namespace = ns
	if oldPod != nil {
		oldPod.Namespace = ns
	}
	var options runtime.Object = &metav1.CreateOptions{}
	op := admission.Operation(req.Operation)
	if op == "" {
		op = admission.Create
	}
	if op == admission.Update {
		options = &metav1.UpdateOptions{}
	}
	var old runtime.Object
	if oldPod != nil {
		old = oldPod
	}
	userInfo := &user.DefaultInfo{Name: "system:serviceaccount:kube-system:replicaset-controller"}
	attrs := &recordingAttributes{
		Attributes:  admission.NewAttributesRecord(pod, old, podGVK, ns, pod.Name, podGVR, req.Subresource, op, options, req.DryRun, userInfo),
		annotations: map[string]string{},
	}
	t0 := time.Now()
	err = mutator.Admit(context.Background(), attrs, o)
	ans.ElapsedMs = time.Since(t0).Milliseconds()
	ans.Calls = callsOf(attrs.annotations)
	if err != nil {
		ans.Error = err.Error()
		var status interface{ Status() metav1.Status }
		if errors.As(err, &status) {
			ans.ErrorCode = status.Status().Code
		}
		return ans
	}
	ans.Allowed = true
	patched, ok := attrs.GetObject().(*corev1.Pod)
	if !ok {
		ans.Error = fmt.Sprintf("admitted object is a %T, not a Pod", attrs.GetObject())
		return ans
	}
	// A decoded typed object carries no TypeMeta; the pod the API server stores does.
	patched.APIVersion, patched.Kind = "v1", "Pod"
	ans.PatchedPod = patched
	ans.Validation = validatePod(patched, oldPod, req.Subresource)
	ans.NodesAfter = matchingNodes(stored(patched, oldPod, req.Subresource), nodes)
	return ans
}

func callsOf(annotations map[string]string) []webhookCall {
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, mutating.MutationAuditAnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	calls := []webhookCall{}
	for _, k := range keys {
		var c webhookCall
		_ = json.Unmarshal([]byte(annotations[k]), &c)
		suffix := strings.TrimPrefix(k, mutating.MutationAuditAnnotationPrefix)
		c.Key = suffix
		_, c.FailedOpen = annotations[mutating.MutationAuditAnnotationFailedOpenKeyPrefix+suffix]
		if p, ok := annotations[mutating.PatchAuditAnnotationPrefix+suffix]; ok {
			var pa struct {
				Patch json.RawMessage `json:"patch"`
			}
			if json.Unmarshal([]byte(p), &pa) == nil {
				c.Patch = pa.Patch
			}
		}
		calls = append(calls, c)
	}
	return calls
}
