#!/usr/bin/env python3
"""Offline checks of deploy/kubernetes (run by deploy/check.sh):

- every kustomization's resources, generators' files and patches resolve to files (or
  directories holding a kustomization) that exist;
- every manifest they reach, and the examples, validate against the Kubernetes schemas
  (kubernetes-validate --strict, which bundles them) or, for the Prometheus Operator's
  kinds, against the CRD schemas kept in schemas/;
- each Deployment's selector matches its pod template, and each Service's and
  PodDisruptionBudget's selector matches some Deployment's pods;
- the pods run as non-root with a read-only root filesystem, no privilege escalation,
  probes on the metrics port, and resources.
"""

import json
import pathlib
import subprocess
import sys

import jsonschema
import yaml

HERE = pathlib.Path(__file__).resolve().parent
KUBERNETES_VERSION = "1.30.0"
CRDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_v1_podmonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
}
KUSTOMIZATION_KEYS = {
    "apiVersion", "kind", "namespace", "labels", "resources", "configMapGenerator",
    "images", "patches",
}

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def kustomization_files(directory, seen):
    """The manifest files a kustomization directory reaches, following bases."""
    k = directory / "kustomization.yaml"
    if not k.exists():
        problem(directory, "no kustomization.yaml")
        return []
    if k in seen:
        return []
    seen.add(k)
    doc = yaml.safe_load(k.read_text())
    for key in doc:
        if key not in KUSTOMIZATION_KEYS:
            problem(k, f"unexpected key {key!r}")
    files = []
    for r in doc.get("resources", []):
        path = (directory / r).resolve()
        if path.is_dir():
            files += kustomization_files(path, seen)
        elif path.is_file():
            files.append(path)
        else:
            problem(k, f"resource {r} does not exist")
    for g in doc.get("configMapGenerator", []):
        for f in g.get("files", []):
            if not (directory / f.split("=")[-1]).is_file():
                problem(k, f"configMapGenerator {g.get('name')}: file {f} does not exist")
    for p in doc.get("patches", []):
        if "path" in p and not (directory / p["path"]).is_file():
            problem(k, f"patch {p['path']} does not exist")
    return files


def documents(files):
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                yield f, doc


def check_crd(f, doc):
    schema = json.loads((HERE / "schemas" / CRDS[(doc["apiVersion"], doc["kind"])]).read_text())
    # Not check_schema(): the CRDs' patterns are Go regexps (`^(?i)…`), valid for the API
    # server though not for Python; a pattern is compiled only where a field uses it.
    for e in jsonschema.Draft7Validator(schema).iter_errors(doc):
        problem(f, f"{doc['kind']} {doc['metadata'].get('name')}: {e.message} at {list(e.path)}")


def check_pods(f, doc):
    """Deployment hygiene: selectors, security, probes, resources."""
    name = doc["metadata"]["name"]
    spec = doc["spec"]
    template = spec["template"]
    labels = template["metadata"].get("labels", {})
    for k, v in spec["selector"]["matchLabels"].items():
        if labels.get(k) != v:
            problem(f, f"Deployment {name}: selector {k}={v} does not match its pods")
    pod = template["spec"]
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        problem(f, f"Deployment {name}: pods do not run as non-root")
    if pod.get("automountServiceAccountToken") is not False:
        problem(f, f"Deployment {name}: mounts a service account token it does not need")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation") is not False:
            problem(f, f"Deployment {name}: container {c['name']} may write its root or escalate")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            if c.get(probe, {}).get("httpGet", {}).get("path") != path:
                problem(f, f"Deployment {name}: {probe} is not {path}")
        if "memory" not in c.get("resources", {}).get("limits", {}):
            problem(f, f"Deployment {name}: no memory limit")
    return labels


def main():
    manifests = set()
    for overlay in ("direct", "kafka"):
        manifests.update(kustomization_files(HERE / overlay, set()))
    manifests.update((HERE / "examples").glob("*.yaml"))
    plain = []
    pod_labels = []
    selectors = []
    for f, doc in documents(sorted(manifests)):
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CRDS:
            check_crd(f, doc)
            continue
        plain.append(f)
        if doc["kind"] == "Deployment":
            pod_labels.append(check_pods(f, doc))
        elif doc["kind"] in ("Service", "PodDisruptionBudget"):
            sel = doc["spec"]["selector"]
            selectors.append((f, doc["kind"], doc["metadata"]["name"], sel.get("matchLabels", sel)))
    for f, kind, name, sel in selectors:
        if not any(all(p.get(k) == v for k, v in sel.items()) for p in pod_labels):
            problem(f, f"{kind} {name}: selector {sel} matches no Deployment's pods")
    files = sorted({str(f) for f in plain})
    r = subprocess.run(
        ["kubernetes-validate", "--strict", "--quiet", "-k", KUBERNETES_VERSION, *files],
        capture_output=True, text=True,
    )
    if r.returncode != 0:
        problem("kubernetes-validate", (r.stdout + r.stderr).strip())
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"deploy/kubernetes: {len(manifests)} manifests valid (Kubernetes {KUBERNETES_VERSION})")


if __name__ == "__main__":
    main()
