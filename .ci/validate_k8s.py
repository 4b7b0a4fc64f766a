"""Validates deploy/k8s offline: every kustomization is rendered (its resources, then its JSON 6902
patches) and each resulting object is checked strictly against the Kubernetes schemas that the
kubernetes-validate package ships, plus what a schema cannot see: every volume a container
mounts is defined, and every claim a pod names is one of the manifests' PVCs or claim templates.

    python .ci/validate_k8s.py deploy/k8s [KUBERNETES_VERSION]
"""

import copy
import pathlib
import sys

import kubernetes_validate
import yaml


def load_objects(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def render(folder):
    """The objects a kustomization folder yields: resources (files or folders), then patches."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    objects = []
    for entry in kustomization.get("resources", []):
        target = (folder / entry).resolve()
        objects += render(target) if target.is_dir() else load_objects(target)
    for patch in kustomization.get("patches", []):
        selector = patch["target"]
        matches = [o for o in objects
                   if o["kind"] == selector["kind"] and o["metadata"]["name"] == selector["name"]]
        if len(matches) != 1:
            raise SystemExit(f"{folder}: patch target {selector} matches {len(matches)} objects")
        for op in yaml.safe_load(patch["patch"]):
            apply(matches[0], op, folder)
    return objects


def apply(obj, op, where):
    """One JSON 6902 operation (add, replace, test) on `obj`, in place."""
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    node = obj
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op["op"] == "add":
            node.insert(index, copy.deepcopy(op["value"]))
            return
        if index >= len(node):
            raise SystemExit(f"{where}: {op['path']}: no such element")
    elif op["op"] != "add" and last not in node:
        raise SystemExit(f"{where}: {op['path']}: no such field")
    if op["op"] in ("add", "replace"):
        node[index if isinstance(node, list) else last] = copy.deepcopy(op["value"])
    elif op["op"] == "test":
        if node[index if isinstance(node, list) else last] != op["value"]:
            raise SystemExit(f"{where}: test {op['path']} == {op['value']!r} failed")
    else:
        raise SystemExit(f"{where}: unsupported patch op {op['op']}")


def check_references(objects, where):
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    problems = []
    for o in objects:
        template = o.get("spec", {}).get("template")
        if not template:
            continue
        pod = template["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        volumes.update({t["metadata"]["name"]: t for t in o["spec"].get("volumeClaimTemplates", [])})
        for container in pod.get("initContainers", []) + pod["containers"]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    problems.append(f"{o['metadata']['name']}/{container['name']} mounts undefined volume {mount['name']}")
        for volume in pod.get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in claims:
                problems.append(f"{o['metadata']['name']} names claim {claim}, which no manifest defines")
    for problem in problems:
        print(f"ERROR {where}: {problem}")
    return not problems


def main():
    root = pathlib.Path(sys.argv[1])
    version = sys.argv[2] if len(sys.argv) > 2 else "1.30.0"
    ok = True
    listed = set()
    for kustomization in sorted(root.rglob("kustomization.yaml")):
        folder = kustomization.parent
        listed.add(kustomization.resolve())
        # A folder entry stands for its own kustomization, which this loop visits too.
        for entry in yaml.safe_load(kustomization.read_text()).get("resources", []):
            listed.add((folder / entry).resolve())
        objects = render(folder)
        for obj in objects:
            name = f"{folder}: {obj['kind']}/{obj['metadata']['name']}"
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                print(f"ERROR {name}: {path}: {e.message}")
                ok = False
            except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
                print(f"ERROR {name}: no schema: {e}")
                ok = False
        ok &= check_references(objects, folder)
        print(f"{folder}: {len(objects)} objects checked against Kubernetes {version}")
    # A manifest no kustomization lists would be applied by hand and never checked.
    for path in sorted(root.rglob("*.yaml")):
        if path.resolve() not in listed:
            print(f"ERROR {path}: not listed in any kustomization, so never validated")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
