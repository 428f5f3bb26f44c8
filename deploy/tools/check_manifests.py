#!/usr/bin/env python3
"""Checks rendered manifests offline.

1. Schemas: every built-in resource against the Kubernetes OpenAPI schemas bundled with
   kubernetes-validate (strict: unknown fields fail), for the oldest and newest Kubernetes we
   support; the CloudNativePG Cluster against cnpg-cluster.schema.json (a subset of the CRD).
2. Guestloop's own rules: probes, drain timing, non-root read-only pods, migrations, one HPA,
   PDB, headless Service and NetworkPolicy per service, no Secret values, default-deny.
3. The collector configuration (deploy/otel/collector.yaml) is complete.

    check_manifests.py deploy/rendered/dev.yaml deploy/rendered/prod.yaml
"""

import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

TOOLS = pathlib.Path(__file__).resolve().parent
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # 1.30: first with the preStop sleep action on by default
SERVICES = ("gateway", "complaints", "crm", "facilities", "audit")
CRD_SCHEMAS = {("postgresql.cnpg.io/v1", "Cluster"): TOOLS / "cnpg-cluster.schema.json"}
SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN")


class Problems(list):
    def add(self, where, message):
        self.append(f"{where}: {message}")


def name_of(document):
    return f"{document['kind']}/{document['metadata']['name']}"


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_schemas(documents, problems):
    for document in documents:
        crd_schema = CRD_SCHEMAS.get((document["apiVersion"], document["kind"]))
        if crd_schema:
            schema = json.loads(crd_schema.read_text(encoding="utf-8"))
            for error in jsonschema.Draft7Validator(schema).iter_errors(document):
                path = ".".join(map(str, error.absolute_path))
                problems.add(name_of(document), f"{path}: {error.message}")
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(map(str, error.path))
                problems.add(name_of(document), f"Kubernetes {version}: {path}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.add(name_of(document), f"no schema for Kubernetes {version}")


def check_pod_security(where, pod, problems):
    security = pod.get("securityContext", {})
    if security.get("runAsNonRoot") is not True or security.get("runAsUser", 0) == 0:
        problems.add(where, "pod must run as a non-root uid (runAsNonRoot, runAsUser)")
    if pod.get("automountServiceAccountToken") is not False:
        problems.add(where, "no service account token is needed")
    for container in pod.get("initContainers", []) + pod["containers"]:
        context = container.get("securityContext", {})
        at = f"{where} container {container['name']}"
        if context.get("readOnlyRootFilesystem") is not True:
            problems.add(at, "root filesystem must be read-only")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.add(at, "allowPrivilegeEscalation must be false")
        if context.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.add(at, "must drop all capabilities")
        resources = container.get("resources", {})
        if "memory" not in resources.get("limits", {}) or "cpu" not in resources.get("requests", {}):
            problems.add(at, "needs a cpu request and a memory limit")
        image = container["image"]
        if ":" not in image.rsplit("/", 1)[-1] and "@" not in image or image.endswith(":latest"):
            problems.add(at, f"image {image} must be pinned by tag or digest")
        for variable in container.get("env", []):
            if any(w in variable["name"] for w in SECRET_WORDS) and "value" in variable:
                problems.add(at, f"{variable['name']} must come from a Secret")
            if variable["name"] == "DATABASE_URL" and "$(DB_PASSWORD)" not in variable["value"]:
                problems.add(at, "DATABASE_URL must take its password from the Secret")


def check_service(name, by_kind, config, problems):
    deployments = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == name]
    if len(deployments) != 1:
        problems.add(name, "exactly one Deployment expected")
        return
    deployment = deployments[0]
    where = name_of(deployment)
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    port = int(config[f"GUESTLOOP_PORTS__{name.upper()}"])
    check_pod_security(where, pod, problems)

    main = next((c for c in pod["containers"] if c["name"] == "guestloop"), None)
    if main is None:
        problems.add(where, "no container named guestloop")
        return
    if main.get("args") != ["serve", name]:
        problems.add(where, f"container must run `guestloop serve {name}`")
    if port not in [p["containerPort"] for p in main.get("ports", [])]:
        problems.add(where, f"gRPC port {port} not exposed")
    migrate = [c for c in pod.get("initContainers", []) if c.get("args") == ["migrate", name]]
    if len(migrate) != 1 or migrate[0]["image"] != main["image"]:
        problems.add(where, f"an init container must run `guestloop migrate {name}` from the same image")

    readiness = main.get("readinessProbe", {}).get("grpc", {})
    if readiness.get("port") != port or not readiness.get("service", "").startswith(
        f"guestloop.{name}.v1."
    ):
        problems.add(where, "readiness must be the native gRPC probe of the service's health name")
    if main.get("startupProbe", {}).get("grpc", {}).get("port") != port:
        problems.add(where, "start-up must be a native gRPC probe")
    if "livenessProbe" not in main:
        problems.add(where, "needs a liveness probe")

    pre_stop = main.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    drain = int(config.get("GUESTLOOP_SERVER__SHUTDOWN_GRACE_MS", "5000")) / 1000
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if pre_stop < 2:
        problems.add(where, "a preStop sleep lets endpoints drop the pod before it drains")
    if grace < pre_stop + drain + 5:
        problems.add(
            where,
            f"terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} s "
            f"+ drain {drain} s + 5 s for the telemetry flush",
        )

    def one(kind, test):
        found = [d for d in by_kind.get(kind, []) if test(d)]
        if len(found) != 1:
            problems.add(where, f"expected one {kind}, found {len(found)}")

    one("HorizontalPodAutoscaler", lambda h: h["spec"]["scaleTargetRef"]["name"] == name)
    one("PodDisruptionBudget", lambda p: selects(p["spec"]["selector"]["matchLabels"], labels))
    one(
        "Service",
        lambda s: s["metadata"]["name"] == name
        and s["spec"].get("clusterIP") == "None"
        and selects(s["spec"]["selector"], labels)
        and port in [p["port"] for p in s["spec"]["ports"]],
    )
    one("NetworkPolicy", lambda n: selects(n["spec"]["podSelector"].get("matchLabels"), labels))
    endpoint = config.get(f"GUESTLOOP_ENDPOINTS__{name.upper()}")
    if endpoint != f"http://{name}:{port}":
        problems.add(where, f"GUESTLOOP_ENDPOINTS__{name.upper()} should be http://{name}:{port}")


def check_network_policies(by_kind, problems):
    policies = by_kind.get("NetworkPolicy", [])
    if not any(
        p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress") and not p["spec"].get("egress")
        for p in policies
    ):
        problems.add("NetworkPolicy", "a default-deny policy for the namespace is required")
    for policy in policies:
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        for rule in policy["spec"].get("ingress", []):
            if "from" not in rule and selector.get("app.kubernetes.io/name") != "gateway":
                problems.add(name_of(policy), "only the gateway may accept traffic from anywhere")


def check_collector(config, problems):
    collector = yaml.safe_load((TOOLS.parent / "otel" / "collector.yaml").read_text("utf-8"))
    protocols = collector["receivers"]["otlp"]["protocols"]
    if not {"grpc", "http"} <= set(protocols):
        problems.add("collector", "OTLP over gRPC and HTTP must both be received")
    grpc_port = protocols["grpc"]["endpoint"].rsplit(":", 1)[1]
    if not config["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(f":{grpc_port}"):
        problems.add("collector", "services must export to the collector's OTLP/gRPC port")
    for name, pipeline in collector["service"]["pipelines"].items():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                if component not in collector.get(section, {}):
                    problems.add(f"collector pipeline {name}", f"{component} is not defined")
    for extension in collector["service"].get("extensions", []):
        if extension not in collector.get("extensions", {}):
            problems.add("collector", f"extension {extension} is not defined")


def check_file(path):
    documents = [d for d in yaml.safe_load_all(path.read_text("utf-8")) if d]
    problems = Problems()
    by_kind = {}
    for document in documents:
        by_kind.setdefault(document["kind"], []).append(document)
    check_schemas(documents, problems)
    for secret in by_kind.get("Secret", []):
        problems.add(name_of(secret), "Secrets are created out of band, never kept here")
    configs = [c for c in by_kind.get("ConfigMap", []) if c["metadata"]["name"] == "guestloop-config"]
    config = configs[0]["data"] if configs else {}
    for name in SERVICES:
        check_service(name, by_kind, config, problems)
    for deployment in by_kind.get("Deployment", []):
        if deployment["metadata"]["name"] not in SERVICES:
            check_pod_security(name_of(deployment), deployment["spec"]["template"]["spec"], problems)
    check_network_policies(by_kind, problems)
    check_collector(config, problems)
    return len(documents), problems


def main(paths):
    failed = False
    for path in map(pathlib.Path, paths):
        count, problems = check_file(path)
        for problem in problems:
            print(f"{path}: {problem}")
        failed |= bool(problems)
        status = "FAILED" if problems else "ok"
        print(f"{path}: {count} documents, {len(problems)} problems ({status})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
