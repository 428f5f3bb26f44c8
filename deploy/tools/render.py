#!/usr/bin/env python3
"""Renders the kustomize overlays offline into deploy/rendered/<overlay>.yaml.

Implements the part of kustomize these manifests use, and refuses anything else, so the output
is what `kustomize build deploy/k8s/overlays/<overlay>` gives (up to the order of documents):
  resources (files and directories with a kustomization.yaml), namespace, labels (metadata only),
  configMapGenerator (files, literals) with disableNameSuffixHash, images, and patches
  (strategic merge, by the patch's own kind/name or by a target with kind, name, labelSelector).

    render.py            write deploy/rendered/{dev,prod}.yaml
    render.py --check    fail when the committed rendering differs from a fresh one
"""

import copy
import difflib
import pathlib
import sys

import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent.parent
OVERLAYS = ("dev", "prod")
KNOWN_KEYS = {
    "apiVersion", "kind", "resources", "namespace", "labels", "configMapGenerator",
    "generatorOptions", "patches", "images",
}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
}
# The order kustomize's legacy sort gives, so `kubectl apply -f` creates what others refer to first.
KIND_ORDER = [
    "Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition", "ServiceAccount",
    "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ConfigMap", "Secret",
    "Endpoints", "Service", "LimitRange", "PriorityClass", "PersistentVolume",
    "PersistentVolumeClaim", "Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget",
]
# Strategic-merge keys of the lists these manifests patch; other lists are replaced whole.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
    "volumeMounts": "mountPath", "imagePullSecrets": "name", "roles": "name",
}


class RenderError(Exception):
    pass


def load_documents(path):
    with open(path, encoding="utf-8") as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def merge_list(key, base, patch):
    merge_key = MERGE_KEYS.get(key)
    if key == "ports" and all(isinstance(item, dict) for item in base + patch):
        merge_key = "containerPort" if any("containerPort" in p for p in base) else "port"
    if merge_key is None:
        return copy.deepcopy(patch)
    result = copy.deepcopy(base)
    for item in patch:
        index = next(
            (i for i, b in enumerate(result) if b.get(merge_key) == item.get(merge_key)), None
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
            continue
        if index is None:
            result.append(strategic_merge({}, item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def strategic_merge(base, patch):
    """Applies a strategic-merge patch (the subset above) to `base`, returning a new value."""
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = strategic_merge(result[key], value)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = merge_list(key, result[key], value)
        elif isinstance(value, dict):
            result[key] = strategic_merge({}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def matches(document, target):
    metadata = document.get("metadata", {})
    if "kind" in target and document.get("kind") != target["kind"]:
        return False
    if "name" in target and metadata.get("name") != target["name"]:
        return False
    for pair in filter(None, target.get("labelSelector", "").split(",")):
        key, _, value = pair.partition("=")
        if metadata.get("labels", {}).get(key.strip()) != value.strip():
            return False
    return True


def generate_config_map(directory, spec, options):
    options = {**options, **spec.get("options", {})}
    if not options.get("disableNameSuffixHash"):
        raise RenderError(f"{directory}: configMapGenerator {spec['name']} needs disableNameSuffixHash")
    data = {}
    for entry in spec.get("files", []):
        key, _, path = entry.rpartition("=") if "=" in entry else (None, "", entry)
        source = (directory / path).resolve()
        if directory.resolve() not in source.parents:
            raise RenderError(f"{directory}: {entry} is outside the kustomization root")
        data[key or source.name] = source.read_text(encoding="utf-8")
    for literal in spec.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    metadata = {"name": spec["name"]}
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def set_images(document, images):
    pod = document.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        name = container["image"].split("@")[0]
        if ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]
        for image in images:
            if image["name"] == name:
                new = image.get("newName", name)
                if "digest" in image:
                    container["image"] = f"{new}@{image['digest']}"
                elif "newTag" in image:
                    container["image"] = f"{new}:{image['newTag']}"
                else:
                    container["image"] = new


def build(directory):
    """The documents `kustomize build directory` would give."""
    directory = pathlib.Path(directory)
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kustomization) - KNOWN_KEYS
    if unknown:
        raise RenderError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")

    documents = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        documents.extend(build(path) if path.is_dir() else load_documents(path))
    options = kustomization.get("generatorOptions", {})
    for spec in kustomization.get("configMapGenerator", []):
        documents.append(generate_config_map(directory, spec, options))

    for patch in kustomization.get("patches", []):
        if set(patch) - {"path", "target"}:
            raise RenderError(f"{directory}: only path and target are supported in patches")
        for body in load_documents(directory / patch["path"]):
            target = patch.get("target") or {
                "kind": body["kind"], "name": body["metadata"]["name"]
            }
            hits = [i for i, d in enumerate(documents) if matches(d, target)]
            if not hits:
                raise RenderError(f"{directory}: patch {patch['path']} matches nothing")
            for index in hits:
                name = documents[index]["metadata"]["name"]
                merged = strategic_merge(documents[index], body)
                merged["metadata"]["name"] = name
                documents[index] = merged

    images = kustomization.get("images", [])
    namespace = kustomization.get("namespace")
    for document in documents:
        if images:
            set_images(document, images)
        if namespace and document["kind"] not in CLUSTER_SCOPED:
            document["metadata"]["namespace"] = namespace
        for label in kustomization.get("labels", []):
            if label.get("includeSelectors") or label.get("includeTemplates"):
                raise RenderError(f"{directory}: labels with selectors or templates unsupported")
            document["metadata"].setdefault("labels", {}).update(label["pairs"])
    return documents


def order(document):
    kind = document["kind"]
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    return (rank, kind, document["metadata"].get("name", ""))


class Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def render(overlay):
    documents = sorted(build(DEPLOY / "k8s" / "overlays" / overlay), key=order)
    header = (
        f"# Rendered from deploy/k8s/overlays/{overlay} by deploy/tools/render.py; do not edit.\n"
    )
    body = "---\n".join(
        yaml.dump(d, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=100)
        for d in documents
    )
    return header + body


def main(arguments):
    check = "--check" in arguments
    stale = []
    for overlay in OVERLAYS:
        output = DEPLOY / "rendered" / f"{overlay}.yaml"
        fresh = render(overlay)
        if check:
            committed = output.read_text(encoding="utf-8") if output.exists() else ""
            if committed != fresh:
                stale.append(output)
                sys.stdout.writelines(
                    difflib.unified_diff(
                        committed.splitlines(True), fresh.splitlines(True),
                        str(output), "fresh rendering", n=2,
                    )
                )
        else:
            output.parent.mkdir(exist_ok=True)
            output.write_text(fresh, encoding="utf-8")
            print(f"rendered {output.relative_to(DEPLOY.parent)}")
    if stale:
        print(f"out of date: {', '.join(map(str, stale))}; run deploy/tools/render.py")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except RenderError as error:
        print(f"render: {error}", file=sys.stderr)
        sys.exit(2)
