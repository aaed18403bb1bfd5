#!/usr/bin/env node
// Offline validation of drainproxy's Kubernetes manifests.
//
//   node validate.mjs [FILE_OR_DIR ...]      (default: ../../deploy/kubernetes)
//
// For every YAML document:
//   1. schema: the kubernetes-models class for its apiVersion/kind (Kubernetes OpenAPI
//      schemas; Prometheus Operator CRD schemas for monitoring.coreos.com) validates it;
//   2. unknown fields: every field must be one the schema knows (what
//      `kubectl apply --validate=strict` enforces; the generated schemas allow extra
//      properties, so a typo such as `readOnlyRootFileSystem` would pass step 1);
//   3. drainproxy rules for workloads with a drainproxy container (timing budget,
//      probes, preStop hooks, ports, security context), and cross-document checks
//      (Service and PodMonitor select the pods and name drainproxy's ports).
// Before that, a self-test proves that each kind of check can fail: deliberately
// broken in-memory documents must be rejected.
//
// Exit code: 0 all valid, 1 a document is invalid or the self-test failed,
// 2 usage error. No network access: everything needed is in node_modules.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");
const DEFAULT_DIR = path.join(REPO, "deploy", "kubernetes");

// ---------------------------------------------------------------------------
// schema lookup: apiVersion/kind -> model class
// ---------------------------------------------------------------------------

// API groups served by packages other than kubernetes-models.
const GROUP_PACKAGES = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

const moduleCache = new Map();

async function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !apiVersion || !kind)
    throw new Error("apiVersion and kind must be non-empty strings");
  const slash = apiVersion.indexOf("/");
  const group = slash < 0 ? "" : apiVersion.slice(0, slash);
  const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
  const spec = group === ""
    ? `kubernetes-models/${version}`
    : `${GROUP_PACKAGES[group] ?? "kubernetes-models"}/${group}/${version}`;
  if (!moduleCache.has(spec)) {
    moduleCache.set(spec, await import(spec).catch(() => null));
  }
  const mod = moduleCache.get(spec);
  const cls = mod?.[kind];
  // Only top-level resources carry static apiVersion/kind (core/v1 also exports
  // nested types such as Container, which are not documents).
  if (typeof cls !== "function" || cls.kind !== kind || cls.apiVersion !== apiVersion)
    throw new Error(`no schema available for apiVersion "${apiVersion}", kind "${kind}"` +
      ` (looked in ${spec})`);
  return cls;
}

// ---------------------------------------------------------------------------
// 1 + 2: schema validation and unknown-field detection
// ---------------------------------------------------------------------------

const ANY_KEY = Symbol("any key");

// Runs the model's compiled (ajv) validator on a Proxy of the document and records
// which properties it reads. The validator reads every property its schema
// declares and enumerates the keys of free-form maps (labels, resources.limits…);
// a property that was present but never read is unknown to the schema.
function unknownFields(cls, doc) {
  const reads = new Map(); // original object -> Set of keys read (or ANY_KEY)
  const proxies = new WeakMap();
  const wrap = (obj) => {
    if (obj === null || typeof obj !== "object") return obj;
    if (proxies.has(obj)) return proxies.get(obj);
    const keys = new Set();
    reads.set(obj, keys);
    const note = (k) => { if (typeof k === "string") keys.add(k); };
    const p = new Proxy(obj, {
      get(t, k, r) { note(k); return wrap(Reflect.get(t, k, r)); },
      has(t, k) { note(k); return Reflect.has(t, k); },
      ownKeys(t) { keys.add(ANY_KEY); return Reflect.ownKeys(t); },
      getOwnPropertyDescriptor(t, k) { note(k); return Reflect.getOwnPropertyDescriptor(t, k); },
    });
    proxies.set(obj, p);
    return p;
  };
  try {
    cls.prototype.validate.call(wrap(doc));
  } catch {
    // schema errors are reported by the plain validation pass
  }
  const unknown = [];
  const walk = (obj, at) => {
    if (obj === null || typeof obj !== "object") return;
    const seen = reads.get(obj);
    if (!seen) return; // the schema does not look inside (free-form): can't judge
    if (Array.isArray(obj)) {
      obj.forEach((v, i) => walk(v, `${at}[${i}]`));
      return;
    }
    for (const [k, v] of Object.entries(obj)) {
      const here = at ? `${at}.${k}` : k;
      if (!seen.has(ANY_KEY) && !seen.has(k)) unknown.push(here);
      else walk(v, here);
    }
  };
  walk(doc, "");
  return unknown;
}

async function schemaErrors(doc) {
  let cls;
  try {
    cls = await modelFor(doc?.apiVersion, doc?.kind);
  } catch (e) {
    return [e.message];
  }
  const errors = [];
  try {
    new cls(doc).validate();
  } catch (e) {
    errors.push(`schema: ${e.message}`);
  }
  for (const f of unknownFields(cls, doc)) errors.push(`unknown field "${f}"`);
  return errors;
}

// ---------------------------------------------------------------------------
// 3: drainproxy rules
// ---------------------------------------------------------------------------

// Defaults from the drainproxy contract (flags table).
const DEFAULTS = {
  listen: "0.0.0.0:8000",
  upstream: "127.0.0.1:8080",
  mode: "http",
  admin: "0.0.0.0:9901",
  "propagation-delay": "5s",
  "drain-timeout": "20s",
  "termination-grace-period": "30s",
  "io-uring": "auto",
};

// Every drainproxy flag (README "Flags"); DRAINPROXY_<FLAG> is its environment form.
// drainproxy ignores unknown DRAINPROXY_* variables (Kubernetes service links inject
// some), so a misspelt one would silently leave the default in force: flag them here.
// tests/integration/test_manifests.py compares this list with `drainproxy --help`.
export const KNOWN_FLAGS = [
  "listen", "upstream", "mode", "admin", "propagation-delay", "drain-timeout",
  "termination-grace-period", "health-check", "health-interval", "health-timeout",
  "health-healthy-threshold", "health-unhealthy-threshold", "workers", "io-uring", "max-connections",
  "connect-timeout", "idle-timeout", "header-timeout", "max-header-bytes", "max-body-bytes",
  "upstream-timeout", "upstream-keepalive", "upstream-idle-timeout", "drain-idle-grace",
  "drain-token", "drain-token-file", "log-format", "log-level",
];

// Durations as drainproxy parses them: a number with a unit (ms, s, m, h), or "0".
function parseDurationMs(text) {
  const s = String(text).trim();
  if (s === "0") return 0;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(s);
  if (!m) throw new Error(`"${text}" is not a duration (a number with ms, s, m or h, e.g. 5s)`);
  const scale = { ms: 1, s: 1000, m: 60000, h: 3600000 }[m[2]];
  return Math.round(Number(m[1]) * scale);
}

function parseHostPort(text) {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(String(text));
  if (!m) throw new Error(`"${text}" is not ADDR:PORT`);
  return { host: m[1].replace(/^\[|\]$/g, ""), port: Number(m[2]) };
}

const fmtS = (ms) => `${ms / 1000}s`;

const isDrainproxyImage = (image) =>
  typeof image === "string" && /(^|\/)drainproxy(:[^/]*|@sha256:[0-9a-f]+)?$/.test(image);

// Effective drainproxy settings: defaults, then DRAINPROXY_* env, then flags in args.
function drainproxySettings(container, problems) {
  const cfg = { ...DEFAULTS };
  const source = Object.fromEntries(Object.keys(DEFAULTS).map((k) => [k, "default"]));
  for (const e of container.env ?? []) {
    if (typeof e?.name !== "string" || !e.name.startsWith("DRAINPROXY_")) continue;
    const flag = e.name.slice("DRAINPROXY_".length).toLowerCase().replace(/_/g, "-");
    if (!KNOWN_FLAGS.includes(flag)) {
      problems.push(`env ${e.name} is not a drainproxy setting (drainproxy ignores unknown ` +
        `DRAINPROXY_* variables, so a misspelt one leaves the default in force)`);
      continue;
    }
    if (!(flag in cfg)) continue;
    if (e.value === undefined) {
      problems.push(`drainproxy env ${e.name} must be a literal value (it is checked against the pod spec)`);
      continue;
    }
    cfg[flag] = String(e.value);
    source[flag] = `env ${e.name}`;
  }
  const args = [...(container.command ?? []), ...(container.args ?? [])].map(String);
  for (let i = 0; i < args.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(args[i]);
    if (!m || !(m[1] in cfg)) continue;
    const value = m[2] ?? args[++i];
    if (value === undefined) {
      problems.push(`drainproxy flag --${m[1]} has no value`);
      continue;
    }
    cfg[m[1]] = value;
    source[m[1]] = `flag --${m[1]}`;
  }
  return { cfg, source };
}

// Resolves a probe/hook port (number or container port name) to a number.
function resolvePort(port, container) {
  if (typeof port === "number") return port;
  const p = (container.ports ?? []).find((x) => x.name === port);
  return p ? p.containerPort : undefined;
}

function checkHttpProbe(probe, what, wantPath, container, adminPort, problems) {
  if (!probe) {
    problems.push(`drainproxy has no ${what}`);
    return;
  }
  const h = probe.httpGet;
  if (!h) {
    problems.push(`drainproxy ${what} must be an httpGet on ${wantPath}`);
    return;
  }
  if (h.path !== wantPath)
    problems.push(`drainproxy ${what} path is "${h.path}", expected "${wantPath}"`);
  const port = resolvePort(h.port, container);
  if (port !== adminPort)
    problems.push(`drainproxy ${what} port "${h.port}" is not the admin port ${adminPort}`);
  if (h.scheme && h.scheme !== "HTTP")
    problems.push(`drainproxy ${what} scheme must be HTTP (the admin port is plain HTTP)`);
}

function commandText(handler) {
  return (handler?.exec?.command ?? []).map(String).join(" ");
}

function checkSecurityContext(c, podSC, label, problems, { readOnlyRoot }) {
  const sc = c.securityContext ?? {};
  const runAsNonRoot = sc.runAsNonRoot ?? podSC.runAsNonRoot;
  const runAsUser = sc.runAsUser ?? podSC.runAsUser;
  if (runAsNonRoot !== true) problems.push(`${label}: securityContext.runAsNonRoot must be true`);
  if (runAsUser === 0) problems.push(`${label}: runAsUser must not be 0`);
  if (sc.allowPrivilegeEscalation !== false)
    problems.push(`${label}: securityContext.allowPrivilegeEscalation must be false`);
  if (sc.privileged === true) problems.push(`${label}: must not be privileged`);
  if (!(sc.capabilities?.drop ?? []).includes("ALL"))
    problems.push(`${label}: securityContext.capabilities.drop must include ALL`);
  const seccomp = sc.seccompProfile?.type ?? podSC.seccompProfile?.type;
  if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost")
    problems.push(`${label}: seccompProfile must be RuntimeDefault or Localhost (pod or container)`);
  if (readOnlyRoot && sc.readOnlyRootFilesystem !== true)
    problems.push(`${label}: securityContext.readOnlyRootFilesystem must be true`);
}

function podTemplateOf(doc) {
  const spec = doc?.spec?.template?.spec;
  return spec && typeof spec === "object" ? spec : null;
}

// Checks a workload's pod template; returns problems (empty = fine).
function drainproxyProblems(doc) {
  const problems = [];
  const pod = podTemplateOf(doc);
  if (!pod) return problems;

  // selector must select the template (the API server insists; the schema can't say)
  const sel = doc.spec?.selector?.matchLabels ?? {};
  const labels = doc.spec?.template?.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(sel))
    if (labels[k] !== v) problems.push(`spec.selector.matchLabels ${k}=${v} does not match the pod template labels`);

  const regular = (pod.containers ?? []).map((c) => ({ c, init: false }));
  const inits = (pod.initContainers ?? []).map((c) => ({ c, init: true }));
  const proxies = [...regular, ...inits].filter(({ c }) => c?.name === "drainproxy" || isDrainproxyImage(c?.image));
  if (proxies.length === 0) return problems; // not a drainproxy workload
  if (proxies.length > 1) {
    problems.push(`${proxies.length} drainproxy containers in one pod; expected exactly one`);
    return problems;
  }
  const { c: dp, init } = proxies[0];
  const model = init ? "native sidecar" : "classic sidecar";
  if (init && dp.restartPolicy !== "Always")
    problems.push(`drainproxy is an init container without restartPolicy: Always: it would have to exit before the app starts (a native sidecar needs restartPolicy: Always)`);

  // --- settings and the timing budget
  const { cfg, source } = drainproxySettings(dp, problems);
  const ms = {};
  for (const k of ["propagation-delay", "drain-timeout", "termination-grace-period"]) {
    try {
      ms[k] = parseDurationMs(cfg[k]);
    } catch (e) {
      problems.push(`--${k} (${source[k]}): ${e.message}`);
    }
  }
  const tgps = pod.terminationGracePeriodSeconds ?? 30;
  if (Object.keys(ms).length === 3) {
    const grace = ms["termination-grace-period"];
    if (grace !== tgps * 1000)
      problems.push(`--termination-grace-period is ${fmtS(grace)} (${source["termination-grace-period"]}) ` +
        `but terminationGracePeriodSeconds is ${tgps}: they must be equal`);
    const margin = Math.max(1000, grace / 10);
    const need = ms["propagation-delay"] + ms["drain-timeout"] + margin;
    if (need > tgps * 1000)
      problems.push(`timing budget: propagation-delay ${fmtS(ms["propagation-delay"])} + drain-timeout ` +
        `${fmtS(ms["drain-timeout"])} + margin ${fmtS(margin)} = ${fmtS(need)} exceeds ` +
        `terminationGracePeriodSeconds ${tgps}s`);
  }
  if (cfg.mode !== "http" && cfg.mode !== "tcp")
    problems.push(`--mode "${cfg.mode}" (${source.mode}) must be http or tcp`);

  // --- ports
  let adminPort, listenPort;
  try {
    adminPort = parseHostPort(cfg.admin).port;
  } catch (e) {
    problems.push(`--admin (${source.admin}): ${e.message}`);
  }
  try {
    listenPort = parseHostPort(cfg.listen).port;
  } catch (e) {
    problems.push(`--listen (${source.listen}): ${e.message}`);
  }
  try {
    const up = parseHostPort(cfg.upstream);
    if (!["127.0.0.1", "localhost", "::1"].includes(up.host))
      problems.push(`--upstream ${cfg.upstream} (${source.upstream}): a sidecar's upstream is the app on loopback`);
  } catch (e) {
    problems.push(`--upstream (${source.upstream}): ${e.message}`);
  }
  const ports = dp.ports ?? [];
  const named = (name) => ports.find((p) => p.name === name);
  if (listenPort !== undefined && named("http")?.containerPort !== listenPort)
    problems.push(`drainproxy must declare containerPort ${listenPort} (its --listen port) named "http"`);
  if (adminPort !== undefined && named("admin")?.containerPort !== adminPort)
    problems.push(`drainproxy must declare containerPort ${adminPort} (its --admin port) named "admin"`);

  // --- probes
  if (adminPort !== undefined) {
    checkHttpProbe(dp.readinessProbe, "readinessProbe", "/ready", dp, adminPort, problems);
    checkHttpProbe(dp.livenessProbe, "livenessProbe", "/live", dp, adminPort, problems);
    if (init) {
      // /ready needs the app, which starts only after the sidecar's startupProbe passed.
      checkHttpProbe(dp.startupProbe, "startupProbe (native sidecar; the app waits for it)", "/live",
        dp, adminPort, problems);
    } else if (dp.startupProbe) {
      checkHttpProbe(dp.startupProbe, "startupProbe", "/live", dp, adminPort, problems);
    }
  }

  // --- drainproxy's own preStop: `drainproxy drain`
  const dpHook = commandText(dp.lifecycle?.preStop);
  if (!/(^|\/)drainproxy drain\b/.test(dpHook))
    problems.push(`drainproxy needs lifecycle.preStop exec ["drainproxy", "drain"] (found: ${dpHook || "none"})`);

  // --- every app container must wait for the drain in its preStop
  const budgetMs = (ms["propagation-delay"] ?? 0) + (ms["drain-timeout"] ?? 0);
  for (const { c } of regular) {
    if (c === dp) continue;
    const label = `container "${c.name}"`;
    const hook = c.lifecycle?.preStop;
    if (!hook) {
      problems.push(`${label} has no lifecycle.preStop: it would get SIGTERM at once and exit while ` +
        `drainproxy still relays requests to it (${model})`);
      continue;
    }
    const text = commandText(hook);
    const waitsOnDrain =
      (hook.exec && adminPort !== undefined && new RegExp(`:${adminPort}/drain\\b`).test(text) &&
        !/wait=false/.test(text)) ||
      (hook.httpGet && String(hook.httpGet.path ?? "").startsWith("/drain") &&
        !/wait=false/.test(hook.httpGet.path) && resolvePort(hook.httpGet.port, dp) === adminPort) ||
      (hook.sleep && Number(hook.sleep.seconds) * 1000 >= budgetMs);
    if (!waitsOnDrain)
      problems.push(`${label}: lifecycle.preStop must block until drainproxy has drained: call ` +
        `http://127.0.0.1:${adminPort}/drain (without wait=false), or sleep >= ` +
        `propagation-delay + drain-timeout (${fmtS(budgetMs)})`);
    // a `sleep N` fallback inside an exec hook must cover the drain as well
    for (const m of text.matchAll(/\bsleep\s+(\d+)\b/g)) {
      const sleepMs = Number(m[1]) * 1000;
      if (sleepMs >= 2000 && sleepMs < budgetMs)
        problems.push(`${label}: preStop fallback "sleep ${m[1]}" is shorter than propagation-delay + ` +
          `drain-timeout (${fmtS(budgetMs)})`);
      if (sleepMs > tgps * 1000)
        problems.push(`${label}: preStop "sleep ${m[1]}" outlasts terminationGracePeriodSeconds ${tgps}`);
    }
  }

  // --- resources and security
  const r = dp.resources ?? {};
  for (const [where, key] of [["requests", "cpu"], ["requests", "memory"], ["limits", "memory"]])
    if (r[where]?.[key] === undefined) problems.push(`drainproxy needs resources.${where}.${key}`);
  const podSC = pod.securityContext ?? {};
  checkSecurityContext(dp, podSC, "drainproxy", problems, { readOnlyRoot: true });
  // RuntimeDefault refuses io_uring (containerd >= 2.0, Docker >= 25): with --io-uring on
  // drainproxy would exit 2 at start instead of falling back to plain syscalls.
  const ioUring = cfg["io-uring"];
  if (!["auto", "on", "off"].includes(ioUring))
    problems.push(`drainproxy --io-uring "${ioUring}" (${source["io-uring"]}) must be auto, on or off`);
  const dpSeccomp = dp.securityContext?.seccompProfile?.type ?? podSC.seccompProfile?.type;
  if (ioUring === "on" && dpSeccomp === "RuntimeDefault")
    problems.push(`drainproxy --io-uring on (${source["io-uring"]}) with seccompProfile RuntimeDefault: that ` +
      `profile refuses io_uring, so drainproxy would exit 2 at start; use auto, or a Localhost profile ` +
      `that allows io_uring_setup, io_uring_enter and io_uring_register`);
  for (const { c } of [...regular, ...inits])
    if (c !== dp) checkSecurityContext(c, podSC, `container "${c.name}"`, problems, { readOnlyRoot: false });

  // resource names: a free-form map in the schema, checked by the API server
  for (const { c } of [...regular, ...inits])
    for (const where of ["requests", "limits"])
      for (const name of Object.keys(c.resources?.[where] ?? {}))
        if (!/^(cpu|memory|ephemeral-storage|hugepages-.+)$/.test(name) && !name.includes("/"))
          problems.push(`container "${c.name}": resources.${where}.${name} is not a resource name ` +
            `(cpu, memory, ephemeral-storage, hugepages-<size> or a domain-qualified extended resource)`);

  return problems;
}

// Service / PodMonitor against the workloads in the same set of manifests.
function crossProblems(doc, workloads) {
  const problems = [];
  const selects = (selector, w) => {
    const labels = w.spec?.template?.metadata?.labels ?? {};
    return Object.keys(selector).length > 0 &&
      Object.entries(selector).every(([k, v]) => labels[k] === v);
  };
  const portsOf = (w) => {
    const pod = podTemplateOf(w);
    return [...(pod.containers ?? []), ...(pod.initContainers ?? [])].flatMap((c) =>
      (c.ports ?? []).map((p) => ({ ...p, container: c })));
  };
  const dpPort = (w, which) => {
    const pod = podTemplateOf(w);
    const dp = [...(pod.containers ?? []), ...(pod.initContainers ?? [])]
      .find((c) => c?.name === "drainproxy" || isDrainproxyImage(c?.image));
    if (!dp) return undefined;
    const { cfg } = drainproxySettings(dp, []);
    try {
      return parseHostPort(cfg[which]).port;
    } catch {
      return undefined;
    }
  };

  if (doc.apiVersion === "v1" && doc.kind === "Service" && doc.spec?.selector) {
    const matched = workloads.filter((w) => selects(doc.spec.selector, w));
    if (matched.length === 0)
      problems.push(`selector ${JSON.stringify(doc.spec.selector)} selects none of the pod templates`);
    for (const w of matched) {
      const listen = dpPort(w, "listen");
      for (const sp of doc.spec.ports ?? []) {
        const target = sp.targetPort ?? sp.port;
        const cp = typeof target === "number"
          ? portsOf(w).find((p) => p.containerPort === target)
          : portsOf(w).find((p) => p.name === target);
        if (!cp && typeof target === "string") {
          problems.push(`port "${sp.name}": targetPort "${target}" is not a container port name in ${w.kind}/${w.metadata?.name}`);
          continue;
        }
        const num = cp?.containerPort ?? target;
        if (listen !== undefined && num !== listen)
          problems.push(`port "${sp.name}": targetPort ${target} bypasses drainproxy; it must be drainproxy's listen port ${listen} in ${w.kind}/${w.metadata?.name}`);
      }
    }
  }

  if (doc.apiVersion === "monitoring.coreos.com/v1" && doc.kind === "PodMonitor") {
    const sel = doc.spec?.selector?.matchLabels ?? {};
    const matched = workloads.filter((w) => selects(sel, w));
    if (matched.length === 0)
      problems.push(`selector ${JSON.stringify(sel)} selects none of the pod templates`);
    for (const w of matched) {
      const admin = dpPort(w, "admin");
      for (const ep of doc.spec.podMetricsEndpoints ?? []) {
        const p = portsOf(w).find((x) => x.name === ep.port);
        if (!p) problems.push(`podMetricsEndpoints port "${ep.port}" is not a container port name in ${w.kind}/${w.metadata?.name}`);
        else if (admin !== undefined && p.containerPort !== admin)
          problems.push(`podMetricsEndpoints port "${ep.port}" is ${p.containerPort}, not drainproxy's admin port ${admin}`);
        if ((ep.path ?? "/metrics") !== "/metrics")
          problems.push(`podMetricsEndpoints path "${ep.path}" must be /metrics`);
      }
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------
// loading
// ---------------------------------------------------------------------------

function yamlFiles(target) {
  const st = fs.statSync(target);
  if (st.isDirectory())
    return fs.readdirSync(target).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => path.join(target, f));
  return [target];
}

// -> [{ where, doc, errors }]
function loadDocuments(file) {
  const text = fs.readFileSync(file, "utf8");
  const inRepo = !path.relative(REPO, file).startsWith("..");
  const rel = inRepo ? path.relative(REPO, file) : file;
  const out = [];
  YAML.parseAllDocuments(text, { prettyErrors: true }).forEach((d, i) => {
    const where = `${rel}#${i}`;
    if (d.errors.length) {
      out.push({ where, doc: null, errors: d.errors.map((e) => `YAML: ${e.message}`) });
      return;
    }
    const doc = d.toJS({ maxAliasCount: 100 });
    if (doc === null || doc === undefined) return; // empty document (e.g. trailing ---)
    if (typeof doc !== "object" || Array.isArray(doc)) {
      out.push({ where, doc: null, errors: ["a Kubernetes manifest must be a mapping"] });
      return;
    }
    out.push({ where, doc, errors: [] });
  });
  return out;
}

async function allProblems(doc, workloads) {
  const errors = await schemaErrors(doc);
  errors.push(...drainproxyProblems(doc));
  errors.push(...crossProblems(doc, workloads));
  return [...new Set(errors)]; // both Deployment variants can report the same thing
}

const label = (doc) => `${doc?.kind ?? "?"}/${doc?.metadata?.name ?? "?"}`;

// ---------------------------------------------------------------------------
// self-test: every kind of check must be able to fail
// ---------------------------------------------------------------------------

async function selfTest(workloads) {
  const minimal = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "broken" },
    spec: {
      replicas: "two",
      selector: { matchLabels: { app: "x" } },
      template: { metadata: { labels: { app: "x" } }, spec: { containers: [{ name: "c", image: "i" }] } },
    },
  };
  const clone = (o) => structuredClone(o);
  const cases = [{ what: 'Deployment with replicas: "two"', doc: minimal, expect: /spec\/replicas must be integer/ }];

  const base = workloads.find((w) => drainproxyProblems(w).length === 0);
  if (base) {
    const dpOf = (w) => {
      const pod = w.spec.template.spec;
      return [...(pod.containers ?? []), ...(pod.initContainers ?? [])].find((c) => c.name === "drainproxy");
    };
    let d = clone(base);
    const sc = dpOf(d).securityContext;
    sc.readOnlyRootFileSystem = sc.readOnlyRootFilesystem; // typo: capital S
    delete sc.readOnlyRootFilesystem;
    cases.push({ what: "misspelt readOnlyRootFileSystem", doc: d, expect: /unknown field ".*securityContext\.readOnlyRootFileSystem"/ });

    d = clone(base);
    d.spec.template.spec.terminationGracePeriodSeconds = 20;
    cases.push({ what: "terminationGracePeriodSeconds 20 with a 30s budget", doc: d, expect: /timing budget: .* exceeds terminationGracePeriodSeconds 20s/ });

    d = clone(base);
    dpOf(d).readinessProbe.httpGet.path = "/live";
    cases.push({ what: "readinessProbe on /live", doc: d, expect: /readinessProbe path is "\/live", expected "\/ready"/ });

    d = clone(base);
    for (const c of d.spec.template.spec.containers) if (c.name !== "drainproxy") delete c.lifecycle;
    cases.push({ what: "app container without preStop", doc: d, expect: /has no lifecycle\.preStop/ });
  } else {
    console.log("self-test: no valid drainproxy Deployment among the inputs; only the schema case runs");
  }

  let failed = 0;
  for (const { what, doc, expect } of cases) {
    const errors = await allProblems(doc, [doc]);
    const hit = errors.some((e) => expect.test(e));
    if (hit) {
      console.log(`self-test ok: ${what} is rejected`);
    } else {
      failed++;
      console.log(`SELF-TEST FAILED: ${what} was not rejected as expected (${expect})`);
      for (const e of errors) console.log(`    got: ${e}`);
    }
  }
  return failed;
}

// ---------------------------------------------------------------------------

// --dump-pods: what the runtime test needs from each drainproxy workload, as JSON.
function podSummaries(entries) {
  const out = [];
  for (const { where, doc } of entries) {
    const pod = podTemplateOf(doc);
    if (!pod) continue;
    const all = [...(pod.containers ?? []), ...(pod.initContainers ?? [])];
    const dp = all.find((c) => c?.name === "drainproxy" || isDrainproxyImage(c?.image));
    if (!dp) continue;
    const env = {};
    for (const e of dp.env ?? []) if (e.value !== undefined) env[e.name] = String(e.value);
    out.push({
      where,
      name: doc.metadata?.name,
      native: (pod.initContainers ?? []).includes(dp),
      terminationGracePeriodSeconds: pod.terminationGracePeriodSeconds ?? 30,
      drainproxy: { env, args: dp.args ?? [], preStop: dp.lifecycle?.preStop?.exec?.command ?? null },
      apps: (pod.containers ?? []).filter((c) => c !== dp).map((c) => ({
        name: c.name, preStop: c.lifecycle?.preStop?.exec?.command ?? null,
      })),
    });
  }
  return out;
}

async function main(argv) {
  if (argv.includes("-h") || argv.includes("--help")) {
    console.log("usage: node validate.mjs [FILE_OR_DIR ...]        validate (default: deploy/kubernetes)\n" +
      "       node validate.mjs --dump-pods [FILE_OR_DIR ...]  drainproxy workloads as JSON\n" +
      "       node validate.mjs --known-flags                  the drainproxy flags it knows, as JSON");
    return 0;
  }
  if (argv[0] === "--known-flags") {
    console.log(JSON.stringify(KNOWN_FLAGS));
    return 0;
  }
  const dump = argv[0] === "--dump-pods";
  if (dump) argv = argv.slice(1);
  const targets = argv.length ? argv : [DEFAULT_DIR];
  let files;
  try {
    files = targets.flatMap((t) => yamlFiles(path.resolve(t)));
  } catch (e) {
    console.error(`validate.mjs: ${e.message}`);
    return 2;
  }
  if (files.length === 0) {
    console.error(`validate.mjs: no .yaml/.yml files in ${targets.join(", ")}`);
    return 2;
  }
  const entries = files.flatMap(loadDocuments);
  const workloads = entries.map((e) => e.doc).filter((d) => d && podTemplateOf(d));
  if (dump) {
    console.log(JSON.stringify(podSummaries(entries), null, 2));
    return 0;
  }

  let failed = await selfTest(workloads);
  let invalid = 0;
  for (const e of entries) {
    const errors = e.doc ? [...e.errors, ...(await allProblems(e.doc, workloads))] : e.errors;
    if (errors.length) {
      invalid++;
      console.log(`FAIL ${e.where} ${label(e.doc)}`);
      for (const m of errors) console.log(`    ${m.trimEnd().replace(/\n/g, "\n      ")}`);
    } else {
      console.log(`ok   ${e.where} ${label(e.doc)}`);
    }
  }
  if (entries.length === 0) {
    console.log("no documents found");
    invalid++;
  }
  console.log(`${entries.length} document(s) in ${files.length} file(s): ${invalid} invalid` +
    (failed ? `; ${failed} self-test case(s) failed` : ""));
  return invalid || failed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err?.stack ?? String(err)); process.exitCode = 1; },
);
