"""The Kubernetes manifests (deploy/k8s): valid against the Kubernetes schemas,
and consistent with what the farm really serves: the autoscaler's metric comes
from a metric the farm exports, the probes are the paths its metrics server
answers, the Service and the learner name the port the farm listens on, and the
memory requests hold the buffer the configuration asks for."""

from __future__ import annotations

import copy
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install kubernetes-validate (the test extra)"
)
yaml = pytest.importorskip("yaml")
pytest.importorskip("pydantic")
pytest.importorskip("prometheus_client")

from generals_rl import ExperienceBuffer
from generals_rl.config.farm import parse_config
from generals_rl.farm import Farm
from generals_rl.metrics import METRICS
from generals_rl.selfplay import SelfPlay, SelfPlayConfig
from generals_rl.service.discovery import DNS_SCHEME, AddressBook
from generals_rl.service.server import parse_address

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"


def documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def find(kind: str, name: str) -> dict:
    (doc,) = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def farm_yaml() -> dict:
    return yaml.safe_load(find("ConfigMap", "generals-rl-farm")["data"]["farm.yaml"])


def actor_container() -> dict:
    (container,) = find("Deployment", "generals-rl-actor")["spec"]["template"]["spec"]["containers"]
    return container


def test_every_manifest_validates_against_the_kubernetes_schemas():
    docs = documents()
    kinds = {d["kind"] for d in docs}
    assert {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap",
    } <= kinds  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validation_rejects_a_broken_manifest():
    broken = copy.deepcopy(find("Deployment", "generals-rl-actor"))
    broken["spec"]["replicas"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    misspelt = copy.deepcopy(find("HorizontalPodAutoscaler", "generals-rl-actor"))
    misspelt["spec"]["maxReplica"] = misspelt["spec"].pop("maxReplicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSION, strict=True)


def test_the_autoscaler_metric_is_derived_from_an_exported_farm_metric():
    hpa = find("HorizontalPodAutoscaler", "generals-rl-actor")
    (metric,) = hpa["spec"]["metrics"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "generals-rl-actor"
    rules = yaml.safe_load(find("ConfigMap", "generals-rl-adapter-rules")["data"]["config.yaml"])
    (rule,) = rules["rules"]
    source = re.match(r"^\s*'?([a-z_]+)\{", rule["seriesQuery"])[1]
    assert source in METRICS, f"{source} is not a metric the farm exports"
    assert METRICS[source][0] == "gauge" and METRICS[source][1] == ()
    assert re.fullmatch(rule["name"]["matches"], source)
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


def test_the_probes_are_the_paths_the_farm_answers(tmp_path):
    container = actor_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    settings = farm_yaml()
    assert ports["metrics"] == parse_address(settings["metrics"]["address"])[1]
    assert ports["experiences"] == parse_address(settings["streaming"]["address"])[1]
    probes = {
        kind: container[kind]["httpGet"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert all(p["port"] == "metrics" for p in probes.values())
    assert probes["readinessProbe"]["path"] == "/readyz"

    # The pod's configuration, on loopback with free ports and small games.
    settings["metrics"]["address"] = settings["streaming"]["address"] = "127.0.0.1:0"
    settings["storage"] = {"format": "npz", "directory": str(tmp_path / "store")}
    settings["collection"].update(envs=4, threads=1, board={"height": 8, "width": 8})
    farm, stop = Farm(parse_config(settings), environ={}), threading.Event()
    thread = threading.Thread(target=farm.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        answers: dict = {}
        while time.monotonic() < deadline and set(answers.values()) != {200}:
            time.sleep(0.1)
            if farm.metrics_address is None:
                continue
            for kind, probe in probes.items():
                answers[kind] = _status(f"http://{farm.metrics_address}{probe['path']}")
        assert answers and set(answers.values()) == {200}, answers
        assert _status(f"http://{farm.metrics_address}/nothing") == 404
    finally:
        stop.set()
        thread.join(30)


def _status(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError:
        return 0


def test_the_headless_service_and_the_learner_reach_every_actor_pod():
    service = find("Service", "generals-rl-actors")
    deployment = find("Deployment", "generals-rl-actor")
    assert service["spec"]["clusterIP"] == "None"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "experiences"
    (learner,) = find("Deployment", "generals-rl-learner")["spec"]["template"]["spec"]["containers"]
    source = learner["args"][learner["args"].index("--from") + 1]
    namespace = service["metadata"]["namespace"]
    assert (
        source
        == f"{DNS_SCHEME}{service['metadata']['name']}.{namespace}.svc.cluster.local:{port['port']}"
    )
    assert AddressBook(source).dynamic
    pdb = find("PodDisruptionBudget", "generals-rl-actor")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_actor_memory_request_holds_the_configured_buffer():
    settings = parse_config(farm_yaml())
    collection = settings.collection
    buffer = ExperienceBuffer(collection.board.height, collection.board.width, 30_000, "overwrite")
    play = SelfPlay(
        SelfPlayConfig(games=None, num_envs=32, height=collection.board.height,
                       width=collection.board.width, num_threads=1),
        buffer,
    )  # fmt: skip
    stop = threading.Event()

    def stop_when_filled():
        while not stop.wait(0.01):
            if buffer.head >= 20_000:
                stop.set()

    threading.Thread(target=stop_when_filled, daemon=True).start()
    play.run(stop)
    stats = buffer.stats()
    needed = stats["bytes_used"] / stats["resident"] * collection.buffer_size
    request = _bytes(actor_container()["resources"]["requests"]["memory"])
    assert request >= 1.2 * needed, (request, needed)
    assert float(actor_container()["resources"]["requests"]["cpu"]) == collection.threads


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)
