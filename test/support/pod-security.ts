// The Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards,
// policy version v1.28 and later), as checks on a pod spec: what the API server's
// PodSecurity admission would reject at "baseline" and "restricted". Returns every
// violation as "<control>: <where>", so a test can list and justify each one.
type Any = Record<string, any>;

const BASELINE_CAPS = new Set(["AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"]);
const SAFE_SYSCTLS = new Set(["kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"]);
const RESTRICTED_VOLUMES = new Set(["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"]);

function containersOf(spec: Any): Array<[string, Any]> {
  return [
    ...(spec.initContainers ?? []).map((c: Any) => [`initContainers[${c.name}]`, c] as [string, Any]),
    ...(spec.containers ?? []).map((c: Any) => [`containers[${c.name}]`, c] as [string, Any]),
    ...(spec.ephemeralContainers ?? []).map((c: Any) => [`ephemeralContainers[${c.name}]`, c] as [string, Any]),
  ];
}

export function baselineViolations(spec: Any): string[] {
  const out: string[] = [];
  const psc = spec.securityContext ?? {};
  for (const f of ["hostNetwork", "hostPID", "hostIPC"]) if (spec[f]) out.push(`host namespaces: spec.${f}`);
  if (psc.windowsOptions?.hostProcess) out.push("hostProcess: spec.securityContext");
  for (const v of spec.volumes ?? []) if (v.hostPath) out.push(`hostPath volumes: ${v.name} (${v.hostPath.path})`);
  if (["Unconfined"].includes(psc.seccompProfile?.type)) out.push("seccomp: spec.securityContext Unconfined");
  if (psc.seLinuxOptions?.type && !["container_t", "container_init_t", "container_kvm_t", "container_engine_t"].includes(psc.seLinuxOptions.type)) out.push("SELinux: spec.securityContext");
  for (const s of psc.sysctls ?? []) if (!SAFE_SYSCTLS.has(s.name)) out.push(`sysctls: ${s.name}`);
  if (psc.appArmorProfile && !["RuntimeDefault", "Localhost"].includes(psc.appArmorProfile.type)) out.push("AppArmor: spec.securityContext");
  for (const [where, c] of containersOf(spec)) {
    const sc = c.securityContext ?? {};
    if (sc.privileged) out.push(`privileged: ${where}`);
    if (sc.windowsOptions?.hostProcess) out.push(`hostProcess: ${where}`);
    for (const cap of sc.capabilities?.add ?? []) if (!BASELINE_CAPS.has(cap)) out.push(`capabilities: ${where} adds ${cap}`);
    for (const p of c.ports ?? []) if (p.hostPort) out.push(`host ports: ${where} ${p.hostPort}`);
    if (sc.procMount && sc.procMount !== "Default") out.push(`/proc mount type: ${where}`);
    if (sc.seccompProfile?.type === "Unconfined") out.push(`seccomp: ${where} Unconfined`);
    if (sc.seLinuxOptions?.type && !["container_t", "container_init_t", "container_kvm_t", "container_engine_t"].includes(sc.seLinuxOptions.type)) out.push(`SELinux: ${where}`);
    if (sc.appArmorProfile && !["RuntimeDefault", "Localhost"].includes(sc.appArmorProfile.type)) out.push(`AppArmor: ${where}`);
  }
  return out;
}

/** Violations of "restricted", which includes every "baseline" control. */
export function restrictedViolations(spec: Any): string[] {
  const out = baselineViolations(spec);
  const psc = spec.securityContext ?? {};
  for (const v of spec.volumes ?? []) {
    const kind = Object.keys(v).find((k) => k !== "name");
    if (kind && !RESTRICTED_VOLUMES.has(kind) && kind !== "hostPath") out.push(`volume types: ${v.name} (${kind})`);
  }
  if (psc.runAsUser === 0) out.push("running as non-root user: spec.securityContext.runAsUser 0");
  for (const [where, c] of containersOf(spec)) {
    const sc = c.securityContext ?? {};
    if (sc.allowPrivilegeEscalation !== false) out.push(`privilege escalation: ${where}`);
    const nonRoot = sc.runAsNonRoot ?? psc.runAsNonRoot;
    if (nonRoot !== true) out.push(`running as non-root: ${where}`);
    if (sc.runAsUser === 0) out.push(`running as non-root user: ${where} runAsUser 0`);
    const seccomp = sc.seccompProfile?.type ?? psc.seccompProfile?.type;
    if (!["RuntimeDefault", "Localhost"].includes(seccomp)) out.push(`seccomp: ${where} not RuntimeDefault/Localhost`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) out.push(`capabilities: ${where} does not drop ALL`);
    for (const cap of sc.capabilities?.add ?? []) if (cap !== "NET_BIND_SERVICE") out.push(`capabilities: ${where} adds ${cap} (restricted)`);
  }
  return [...new Set(out)];
}
