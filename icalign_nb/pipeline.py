"""Steps that join the data flow: load inputs, build the retriever, write retrievals."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import polars as pl

from .data import load_eval, load_pool, parse_field_map
from .embed import DEFAULT_ENCODER, Encoder
from .files import write_jsonl
from .models import load_tokenizer
from .retrieve import Retrieval, Retriever, check_pool_size, get_preset

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class RetrievalSetup:
    """Everything a retrieval run needs, as the user named it."""

    pool: str = "starter"
    eval: str = "starter"
    preset: str = "paper"
    encoder: str = DEFAULT_ENCODER
    tokenizer: str = DEFAULT_MODEL
    urial_prompt: str | None = None
    fields: str | None = None
    seed: int = 0
    limit: int | None = None
    data_dir: str | None = None
    overrides: dict = field(default_factory=dict)  # RetrievalConfig fields, e.g. max_k, max_tokens


def load_queries(setup: RetrievalSetup) -> pl.DataFrame:
    """The evaluation queries, cut to `limit`."""
    queries = load_eval(setup.eval, setup.data_dir)
    return queries.head(setup.limit) if setup.limit else queries


def build_retriever(
    setup: RetrievalSetup, tokenizer: object | None = None, encoder: Encoder | None = None
) -> Retriever:
    """A ready retriever for the setup (pool embedded or read from the cache)."""
    config = get_preset(setup.preset, seed=setup.seed, urial_path=setup.urial_prompt, **setup.overrides)
    needs_pool = config.method in {"retrieve", "random"}
    pool = (
        load_pool(setup.pool, setup.data_dir, parse_field_map(setup.fields))
        if needs_pool
        else pl.DataFrame({"id": ["-"], "prompt": ["-"], "response": ["-"]})
    )
    check_pool_size(config, pool)
    tokenizer = tokenizer or load_tokenizer(setup.tokenizer)
    if config.method == "retrieve":
        encoder = encoder or Encoder(setup.encoder).load()
    return Retriever(pool, config, tokenizer, encoder, preset_name=setup.preset)


def retrieve_all(setup: RetrievalSetup) -> list[Retrieval]:
    """Retrieve and pack for every query of the setup."""
    queries = load_queries(setup)
    return build_retriever(setup).retrieve(queries)


def run_retrieve(args: argparse.Namespace) -> None:
    """`icalign retrieve`: one JSON line per query, written atomically."""
    setup = RetrievalSetup(
        pool=args.pool,
        eval=args.eval,
        preset=args.preset,
        encoder=args.encoder or DEFAULT_ENCODER,
        tokenizer=args.tokenizer or DEFAULT_MODEL,
        urial_prompt=args.urial_prompt,
        fields=args.fields,
        seed=args.seed,
        limit=args.limit,
        data_dir=args.data_dir,
        overrides={
            "max_k": args.max_k,
            "max_tokens": args.max_tokens,
            "max_per_instance_tokens": args.max_demo_tokens,
            "similarity": args.similarity,
        },
    )
    get_preset(setup.preset, **setup.overrides)  # fail on a bad preset before loading anything
    results = retrieve_all(setup)
    write_jsonl(args.out, [r.to_json() for r in results])
    kept = [len(r.demo_ids) for r in results]
    mean = sum(kept) / len(kept) if kept else 0.0
    print(f"wrote {len(results)} retrievals to {args.out} (mean demos kept: {mean:.1f})")
