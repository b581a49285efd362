"""The command line's commands (`fwsvd_core.cli` holds the options and starts them): loading, statistics, sweeps,
compression and the predictor's validation, with their messages and exit codes."""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, cast

import torch
import torch.distributed as dist
import transformers
from tqdm import tqdm
from transformers.utils import logging as hf_logging

from fwsvd_core import __version__
from fwsvd_core.analysis.markdown import markdown_table
from fwsvd_core.analysis.predictor import PredictorValidation, validate_predictor
from fwsvd_core.analysis.sweep import ranks_for, run_sweep, same_split_warning
from fwsvd_core.compression.allocation import ALLOCATORS, allocate, loss_model
from fwsvd_core.compression.card_metadata import calibration_record
from fwsvd_core.compression.export import check_export_target, save_compressed
from fwsvd_core.compression.finetune import finetune_compressed
from fwsvd_core.compression.methods import (
    ACTIVATIONS,
    DEFAULT_METHOD,
    FISHER,
    KRONECKER,
    canonical_method,
    get_method,
    kronecker_iterations,
)
from fwsvd_core.compression.ranks import RankRequest, count_params, read_rank_request, summarize
from fwsvd_core.compression.session import CompressionSession, factors_bytes
from fwsvd_core.demo import is_demo, needs_build
from fwsvd_core.devices import release_freed_buffers
from fwsvd_core.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_MEMORY,
    EXIT_USAGE,
    FwsvdError,
    InsufficientMemoryError,
)
from fwsvd_core.estimation.activations import activation_estimate, estimate_activation_stats
from fwsvd_core.estimation.distributed import process_group
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.estimation.fisher import FisherResult, estimate_fisher, fisher_estimate
from fwsvd_core.estimation.gradients import activation_checkpointing, captured_bytes
from fwsvd_core.estimation.kronecker import KroneckerFactors, estimate_kronecker, kronecker_estimate
from fwsvd_core.estimation.passes import AUTO, STATISTICS_SHARE, PassPlan, plan_passes
from fwsvd_core.folders import (
    RESULT_MARKER,
    check_result_targets,
    check_writable,
    result_marker,
    result_paths,
    write_result_files,
)
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.families import family_names, family_of, label_mapping, load_task_data, task_for_files
from fwsvd_core.inputs.layers import LayerInfo, layer_table
from fwsvd_core.inputs.memory import MemoryEstimate, available_bytes, backward_activations, format_bytes
from fwsvd_core.inputs.models import LoadedModel
from fwsvd_core.inputs.precision import dtype_name, model_dtype
from fwsvd_core.inputs.tasks import TASKS, TaskSpec, get_task
from fwsvd_core.loading import load_model


class UsageError(FwsvdError):
    """An option's value that cannot work with this model or machine: the command line is wrong (exit 2)."""


class _LogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return f"WARNING: {message}" if record.levelno >= logging.WARNING else message


log = logging.getLogger("fwsvd_core")


def _progress(label: str, unit: str = "examples"):
    """A progress callback (done, total) drawing a bar with rate and time left on stderr; none with --quiet."""
    bar: tqdm | None = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=label, unit=f" {unit}", file=sys.stderr, dynamic_ncols=True,
                       disable=not log.isEnabledFor(logging.INFO))
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
    return report


def _hub_args(args) -> dict:
    return {"revision": args.revision, "token": args.token, "device_map": args.device_map}


def _load(args) -> LoadedModel:
    """The model of --model; building a demo first says so (it fine-tunes for minutes) and shows its progress."""
    data_dir = getattr(args, "data_dir", None)
    if is_demo(args.model) and needs_build(args.model, data_dir):
        log.info(f"{args.model} is not built yet: fine-tuning it once (minutes on a CPU); later runs load it from the "
                 f"cache")
    return load_model(args.model, device=args.device, trust_remote_code=args.trust_remote_code, dtype=args.dtype,
                      progress=_progress("building the demo (once)", "steps"), data_dir=data_dir,
                      family=family_of_option(getattr(args, "task", None)), **_hub_args(args))


def family_of_option(task: str | None) -> str | None:
    """The family --task names: itself (a family's name, for your own files) or the registered task's family."""
    if task is None:
        return None
    return task if task in family_names() else get_task(task).family


def split_files(args) -> dict[str, Path]:
    """Your own files by the split they stand for: --train-file for the Fisher split, --validation-file scored."""
    given = ((args.fisher_split, args.train_file), (args.eval_split, args.validation_file))
    return {split: Path(file) for split, file in given if file}


def task_of(args, loaded: LoadedModel) -> TaskSpec:
    """The task of --task: a registered one, or the one a family makes of your own files and the model's config."""
    files = split_files(args)
    return task_for_files(args.task, loaded.model.config, list(files.values())) if files else get_task(args.task)


def task_split(args, task: TaskSpec, split: str) -> TaskData:
    """One split: your own file where one is given for it, else from --data-source and --data-dir."""
    if (file := split_files(args).get(split)) is not None:
        return load_task_data(task, split, "local", file, args.skip_bad_rows)
    return load_task_data(task, split, args.data_source, args.data_dir, args.skip_bad_rows)


# models whose position numbers start after the padding index, as RoBERTa's do
_POSITIONS_AFTER_PADDING = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "mpnet", "data2vec-text",
                            "roberta-prelayernorm", "xmod", "ibert"}


def model_positions(config) -> int | None:
    """The most tokens the model takes in one example (its position embeddings); None where it has no such bound."""
    if getattr(config, "position_biased_input", True) is False:
        return None  # relative positions only (DeBERTa v2/v3): no table to run past
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            if getattr(config, "model_type", "") in _POSITIONS_AFTER_PADDING:
                value -= (getattr(config, "pad_token_id", None) or 0) + 1  # 514 positions take 512 tokens
            return value
    return None


def check_max_length(max_length: int, loaded: LoadedModel, pair: bool) -> None:
    """Raise UsageError when --max-length leaves no room for text, or runs past the model's positions."""
    # below the special tokens transformers turns truncation off without a word, and longer texts then break the batch
    special = cast(Any, loaded.tokenizer).num_special_tokens_to_add(pair=pair)
    if max_length <= special:
        raise UsageError(f"--max-length {max_length} leaves no room for text: this tokenizer adds {special} special "
                         f"tokens to each {'pair' if pair else 'example'}. Use at least {special + 1} (the default is 128).")
    positions = model_positions(loaded.model.config)
    if positions is not None and max_length > positions:
        raise UsageError(f"--max-length {max_length} is more than this model takes: it has {positions} positions. "
                         f"Use --max-length {positions} or less.")


def _prepare(args) -> tuple[LoadedModel, CompressionSession, TaskData, TaskData]:
    loaded = _load(args)
    task = task_of(args, loaded)
    check_max_length(args.max_length, loaded, task.is_pair)
    family = family_of(task)
    eval_data, fisher_data = (family.prepare(loaded.tokenizer, task_split(args, task, split), args.max_length)
                              for split in (args.eval_split, args.fisher_split))
    log.info(f"model: {loaded.source} ({dtype_name(model_dtype(loaded.model))})")
    log.info(f"data: {eval_data.source} (scored), {fisher_data.source} (Fisher)")
    for note in dict.fromkeys(eval_data.notes + fisher_data.notes):
        log.warning(f"data: {note}")
    if (mapping := label_mapping(loaded.model.config, task)) is not None and (warning := mapping.warning):
        log.warning(f"labels: {warning}")
    if split_warning := same_split_warning(fisher_data, eval_data):
        log.warning(split_warning)
    session = CompressionSession(loaded, progress_for=_progress)
    return loaded, session, fisher_data, eval_data


GRADIENT_BATCH = 16  # examples per backward pass of the Fisher and Kronecker statistics


def _memory_budget(session: CompressionSession, reserved: int = 0) -> int:
    """The bytes statistics or factors may take beside the loaded model: a share of what its device has left once
    `reserved` bytes (a backward pass's activations) are set aside."""
    return int(STATISTICS_SHARE * max(available_bytes(session.loaded.device) - reserved, 0))


def _blocks_per_pass(args, session: CompressionSession, what: str,
                     estimate: Callable[[list[LayerInfo]], MemoryEstimate], backward: BackwardPlan | None = None,
                     ) -> int | PassPlan | None:
    """--blocks-per-pass as given, or for `auto` the plan made from the statistic's memory `estimate` and, for a
    `backward` pass, the layer inputs and gradients it captures, within a share of the memory its activations leave
    (said in the log when it takes more than one pass)."""
    if args.blocks_per_pass != AUTO:
        return args.blocks_per_pass
    reserved, batch_tokens = (0, 0) if backward is None else (backward.activation_bytes, backward.tokens)
    budget = _memory_budget(session, reserved)
    if dist.is_available() and dist.is_initialized():  # every process must make the same passes: plan for the least
        least = torch.tensor([budget], dtype=torch.int64)
        dist.all_reduce(least, op=dist.ReduceOp.MIN)
        budget = int(least.item())
    element = model_dtype(session.model).itemsize
    plan = plan_passes(session.layers, lambda group: estimate(group).total + captured_bytes(group, batch_tokens, element),
                       budget)
    if plan.passes == 1:
        return None
    log.info(plan.describe(what))
    release_freed_buffers()  # memory is short: no freed buffer kept in the allocator's heap
    return plan


class BackwardPlan(NamedTuple):
    """How the statistics' backward passes run: examples per batch, checkpointed or not, the activations they keep."""

    batch: int
    checkpointed: bool
    activation_bytes: int
    tokens: int  # per batch


def _backward_plan(args, session: CompressionSession, data: TaskData, may_shrink: bool = True) -> BackwardPlan:
    """Examples per backward pass of the statistics over `data`, and whether to checkpoint the blocks:
    --activation-checkpointing as given, or for `auto` on when a batch's backward activations (estimated) exceed the
    memory the statistics leave; then, and when even checkpointed they would not fit, fewer examples per batch
    (`may_shrink`; both said in the log). A batch's size does not change what the statistics are, except for the
    Fisher's `batch` estimator."""
    full = max(1, min(GRADIENT_BATCH, args.fisher_samples or len(data), len(data)))  # no batch beyond the examples
    config = getattr(session.model, "config", None)
    forced = args.activation_checkpointing != "auto"
    if config is None:
        return BackwardPlan(full, args.activation_checkpointing == "on", 0, full * args.max_length)
    room = int((1 - STATISTICS_SHARE) * available_bytes(session.loaded.device))

    def needed(batch: int, checkpointed: bool) -> int:
        return backward_activations(config, batch, args.max_length, checkpointed)

    on = args.activation_checkpointing == "on" if forced else needed(full, False) > room
    if on and not forced:
        log.info(f"activation checkpointing on: a batch of {full} x {args.max_length} tokens keeps about "
                 f"{format_bytes(needed(full, False))} of activations for its backward pass, "
                 f"{format_bytes(room)} is left for them")
        release_freed_buffers()  # memory is short: no freed buffer kept in the allocator's heap
    batch = full
    if may_shrink and needed(full, on) > room:
        batch = next((b for b in range(full - 1, 0, -1) if needed(b, on) <= room), 1)
        log.info(f"statistics: {batch} example(s) per backward pass instead of {full}, so that the "
                 f"activations of {args.max_length}-token examples fit in {format_bytes(room)}"
                 + (" (even then they may not)" if needed(batch, on) > room else ""))
    return BackwardPlan(batch, on, needed(batch, on), batch * args.max_length)


def _fisher(args, session: CompressionSession, fisher_data: TaskData) -> FisherResult:
    backward = _backward_plan(args, session, fisher_data, may_shrink=args.estimator != "batch")
    with activation_checkpointing(session.model, backward.checkpointed):
        fisher = estimate_fisher(session.model, session.loaded.tokenizer, fisher_data, args.fisher_samples,
                                 args.estimator, args.seed, batch_size=backward.batch, max_length=args.max_length,
                                 fingerprint=session.loaded.fingerprint, progress=_progress("Fisher"),
                                 allow_degenerate=args.allow_degenerate_fisher, form=args.fisher_form,
                                 blocks_per_pass=_blocks_per_pass(args, session, "Fisher", lambda g: fisher_estimate(
                                     g, "full" if args.fisher_form == "full" else "profiles"), backward))
    cached = " (from cache)" if fisher.from_cache else ""
    # the skipped count is shown even with --quiet: it says how far the Fisher can be trusted
    log.log(logging.WARNING if fisher.n_skipped else logging.INFO,
            f"Fisher: {fisher.estimator} estimator, {fisher.form} form, {fisher.n_examples} examples of "
            f"{fisher_data.split}, "
            f"{fisher.n_skipped} skipped, {fisher.seconds:.1f} s{cached}")
    for note in fisher.notes:
        log.warning(f"Fisher: {note}")
    session.set_fisher(fisher)
    return fisher


def _calibrate(args, session: CompressionSession, fisher_data: TaskData, methods: list[str], allocators: str) -> None:
    """Estimate what the chosen methods and allocators need: the Fisher, input activations."""
    session.tfwsvd_settings = {"max_iter": args.solver_iters, "tol": 1e-4, "time_budget": args.solver_seconds}
    needs = set().union(*(get_method(m).needs for m in methods))
    needs_fisher = FISHER in needs or any(loss_model(a) is not None for a in allocators.split(","))
    if needs_fisher:
        _fisher(args, session, fisher_data)
    if ACTIVATIONS in needs:
        stats = estimate_activation_stats(session.model, session.loaded.tokenizer, fisher_data, args.fisher_samples,
                                          args.seed, max_length=args.max_length, fingerprint=session.loaded.fingerprint,
                                          blocks_per_pass=_blocks_per_pass(args, session, "activations",
                                                                           activation_estimate))
        log.info(f"activations: {stats.n_examples} examples of {fisher_data.split}, {stats.seconds:.1f} s")
        session.set_activations(stats)
    if KRONECKER in needs:
        iterations = kronecker_iterations(methods, args.kronecker_iterations)  # none for K-FAC alone
        session.set_kronecker(_kronecker(args, session, fisher_data, iterations), args.damping)


def _kronecker(args, session: CompressionSession, fisher_data: TaskData, iterations: int) -> KroneckerFactors:
    backward = _backward_plan(args, session, fisher_data)
    with activation_checkpointing(session.model, backward.checkpointed):
        factors = estimate_kronecker(session.model, session.loaded.tokenizer, fisher_data, args.fisher_samples,
                                     args.seed, iterations, batch_size=backward.batch, max_length=args.max_length,
                                     fingerprint=session.loaded.fingerprint, progress=_progress("Kronecker factors"),
                                     blocks_per_pass=_blocks_per_pass(args, session, "Kronecker factors",
                                                                      lambda g: kronecker_estimate(g, iterations),
                                                                      backward))
    converged = f", last power iteration moved A by {factors.change[-1]:.2g}" if factors.change else ""
    log.log(logging.WARNING if factors.n_skipped else logging.INFO,
            f"Kronecker factors: {factors.n_examples} examples of {fisher_data.split}, {factors.n_skipped} skipped, "
            f"{factors.iterations} power iterations{converged}, {factors.seconds:.1f} s"
            + (" (from cache)" if factors.from_cache else ""))
    return factors


def _result_paths(args, default_name: str, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """The files --out names, refused now (before any work) when they cannot be written or are not the tool's."""
    paths = result_paths(args.output_dir, default_name, suffixes)
    check_writable(paths[".json"])
    check_result_targets(paths)
    return paths


def cmd_predictor(args) -> int:
    paths = _result_paths(args, "predictor", (".csv", ".json", ".md"))
    loaded, session, fisher_data, eval_data = _prepare(args)
    fisher = _fisher(args, session, fisher_data)
    # the Kronecker predictors: K-FAC and the nearest Kronecker product
    session.set_kronecker(_kronecker(args, session, fisher_data, args.kronecker_iterations), args.damping)
    table, stats = validate_predictor(session, eval_data, args.rank_ratio, args.weighted, calibration=fisher_data,
                                      n_examples=args.fisher_samples, subsample=args.eval_subsample,
                                      progress=_progress("layers", "layers"))
    print(table.round(5).to_string(index=False))
    print(json.dumps(stats.as_dict()))
    command = args.command_line
    meta = {"model": loaded.source, "task": args.task, "rank ratio": args.rank_ratio, "fisher examples": fisher.n_examples,
            "fisher skipped": fisher.n_skipped, "weighted": args.weighted, "command": command, "stats": stats.as_dict(),
            "layers": table.to_dict(orient="records"), RESULT_MARKER: result_marker(paths, "predictor")}
    write_result_files({paths[".csv"]: table.to_csv(index=False), paths[".json"]: json.dumps(meta, indent=1),
                        paths[".md"]: predictor_report(table, stats, loaded.source, eval_data, args, command)},
                       paths[".json"])
    log.info(f"wrote {paths['.csv']}, {paths['.json']} and {paths['.md']}")
    return 0


def predictor_report(table, stats: PredictorValidation, model: str, eval_data: TaskData, args, command: str) -> str:
    """The validation as markdown: correlations with their intervals, the reliability bound, the per-layer table."""
    lines = [f"# Predictor of SVD failure: {model} on {args.task}", "", f"Made by `{command}`", "",
             f"Each of the {stats.layers} layers compressed alone at rank ratio {args.rank_ratio} with SVD and with "
             f"{args.weighted}; task loss measured on {stats.examples_scored} examples of {eval_data.source}. "
             f"Predictors from the Fisher of {args.fisher_samples} training examples, no compressed model evaluated. "
             "The intervals resample the scored examples (the measurement's noise), not the layers.", "",
             "| predictor | Spearman vs measured extra loss of SVD | 95% bootstrap interval | "
             f"Spearman vs score gain of {args.weighted} |",
             "|---|---|---|---|"]
    for name, agreement in stats.agreement.items():
        lines.append(f"| {name} | {agreement.with_loss:.3f} | {agreement.low:.3f} to {agreement.high:.3f} | "
                     f"{agreement.with_score:.3f} |")
    significant = int((table["measured SVD excess loss"].abs() > 2 * table["standard error"]).sum())
    lines += ["", f"Split-half reliability of the measurement: {stats.reliability:.3f} (a predictor can "
              "correlate with the measurement up to about its square root). Layers whose measured difference is more "
              f"than two standard errors from zero: {significant} of {len(table)}.", "",
              markdown_table(table.round(5).to_dict(orient="records")), ""]
    return "\n".join(lines)


def cmd_statistics(args) -> int:
    """The Fisher (and with --activations the calibration statistics) into the cache, data-parallel under torchrun."""
    _, session, fisher_data, _ = _prepare(args)
    fisher = _fisher(args, session, fisher_data)
    rank, size = process_group()
    if args.activations:
        stats = estimate_activation_stats(session.model, session.loaded.tokenizer, fisher_data, args.fisher_samples,
                                          args.seed, max_length=args.max_length, fingerprint=session.loaded.fingerprint,
                                          blocks_per_pass=_blocks_per_pass(args, session, "activations",
                                                                           activation_estimate))
        log.info(f"activations: {stats.n_examples} examples of {fisher_data.split}, {stats.seconds:.1f} s")
    if args.kronecker:
        _kronecker(args, session, fisher_data, args.kronecker_iterations)
    if rank == 0:
        print(f"Fisher of {fisher.n_examples} examples ({fisher.n_skipped} skipped) over {size} process(es), cached "
              f"as {fisher.key}: sweep, compress and predictor read it with the same --model, --task, data, "
              "--fisher-samples, --seed, --estimator and --max-length.")
    return 0


def _join_process_group(args) -> None:
    """Under torchrun or accelerate launch (WORLD_SIZE > 1): join the group, each process on a GPU of its own."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    if args.command != "statistics":  # every process would repeat the whole command and write the same files
        raise FwsvdError(f"Only the statistics command runs in several processes; run {args.command} in one (it "
                         "reads the statistics that command cached).")
    if torch.cuda.is_available() and args.device in (None, "cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        args.device = f"cuda:{local}"
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def cmd_layers(args) -> int:
    loaded = _load(args)
    print(layer_table(CompressionSession(loaded).layers).to_string(index=False))
    return 0


def cmd_sweep(args) -> int:
    paths = _result_paths(args, "sweep", (".csv", ".json"))
    loaded, session, fisher_data, eval_data = _prepare(args)
    methods = [canonical_method(m) for m in args.methods.split(",") if m.strip()]
    _calibrate(args, session, fisher_data, methods, args.allocators)
    start = time.perf_counter()
    table = run_sweep(session, eval_data, methods, args.ratios or None, args.param_ratios or None, batch_size=args.batch_size,
                      max_length=args.max_length,
                      allocators=[a.strip() for a in args.allocators.split(",") if a.strip()],
                      subsample=args.eval_subsample, report=log.info,
                      train_data=fisher_data, finetune_steps=args.finetune_steps, finetune_lr=args.finetune_lr)
    table = with_removed_columns(table)
    print(table.to_string(index=False, na_rep=""))  # a cell that does not apply (the dense row's allocator) is blank
    meta = {"model": loaded.source, "task": args.task, "eval data": eval_data.source, "eval split": eval_data.split,
            "fisher data": fisher_data.source, "fisher split": fisher_data.split, "fisher samples": args.fisher_samples,
            "estimator": args.estimator, "seed": args.seed,
            "fisher skipped": None if session.fisher is None else session.fisher.n_skipped,
            "seconds": round(time.perf_counter() - start, 1),
            "rows": table.to_dict(orient="records"), RESULT_MARKER: result_marker(paths, "sweep")}
    write_result_files({paths[".csv"]: table.to_csv(index=False), paths[".json"]: json.dumps(meta, indent=1, default=str)},
                       paths[".json"])
    log.info(f"wrote {paths['.csv']} and {paths['.json']}")
    return 0


def with_removed_columns(table):
    """The sweep's table with each kept parameter ratio also stated as removed (the LLM papers' "% removed")."""
    table = table.copy()
    for scope in ("layers", "model"):
        kept = f"param ratio ({scope})"
        if kept in table.columns:
            table.insert(table.columns.get_loc(kept) + 1, f"removed ({scope})", (1 - table[kept]).round(4))
    return table


def rank_file_method(request: RankRequest) -> str | None:
    """The method a rank file names (the rank editor's JSON and an export's rank table do), canonical; None when none."""
    if request.method is None:
        return None
    try:
        return canonical_method(request.method)
    except FwsvdError as exc:
        raise UsageError(f"The rank file {request.source} names the method {request.method!r}, which this tool does not "
                         f"know ({exc}). Give --method.") from None


def _compress_method(args, request: RankRequest | None) -> str:
    """--method, or the rank file's method when --method is not given (a disagreement between them is refused)."""
    from_file = rank_file_method(request) if request is not None else None
    if args.method is None:
        if from_file is not None:
            log.info(f"method: {from_file}, as the rank file {args.ranks} says")
        return from_file or DEFAULT_METHOD
    chosen = canonical_method(args.method)
    if from_file is not None and from_file != chosen:
        raise UsageError(f"--method {args.method} disagrees with the rank file {args.ranks}, whose ranks were chosen for "
                         f"{from_file}. Leave --method out to use {from_file}, or give --method {from_file}.")
    return chosen


def budget_description(model_params: int, session: CompressionSession, ranks: dict[str, int]) -> dict[str, float]:
    """The budget in both conventions: kept (of the compressible layers, of the model) and removed (as LLM papers)."""
    summary = summarize(model_params, session.layers, ranks)
    return {"kept of the compressible layers": summary.compressible_param_ratio, "kept of the model": summary.param_ratio,
            "removed of the compressible layers": 1 - summary.compressible_param_ratio,
            "removed of the model": 1 - summary.param_ratio,
            "parameters before": summary.model_params_before, "parameters after": summary.model_params_after}


def budget_line(budget: dict[str, float]) -> str:
    return (f"parameters: kept {budget['kept of the compressible layers']:.1%} of the compressible layers "
            f"({budget['kept of the model']:.1%} of the model), i.e. removed "
            f"{budget['removed of the compressible layers']:.1%} of them ({budget['removed of the model']:.1%} of the "
            f"model): {budget['parameters before']:,} -> {budget['parameters after']:,}")


def _results_paths(args) -> dict[str, Path] | None:
    """The results JSON of compress --evaluate (refused now, before any work, when it cannot be written)."""
    if not args.evaluate:
        if args.results_file:
            raise UsageError("--results-file names where --evaluate writes its scores: add --evaluate, or leave it out.")
        return None
    target = args.results_file or f"{str(args.output_dir).rstrip('/')}.results.json"
    paths = result_paths(str(target).removesuffix(".json"), "results", (".json",))
    check_writable(paths[".json"])
    check_result_targets(paths)
    return paths


def versions() -> dict[str, str]:
    """The versions a result depends on, as a results file records them."""
    return {"fwsvd": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def data_description(data: TaskData) -> dict[str, Any]:
    return {"source": data.source, "task": data.task.name, "split": data.split, "examples": len(data)}


def _scored(args, label: str, model, loaded: LoadedModel, eval_data: TaskData):
    result = evaluate(model, loaded.tokenizer, eval_data, args.batch_size, args.max_length, args.eval_subsample,
                      progress=_progress(f"scoring {label}"))
    print(f"{label}: {result.describe()}")
    return result


def _streams(session: CompressionSession) -> bool:
    """Whether the factors of every layer would not fit in half the memory available beside the model: then each
    layer is factorized as it is replaced, in the model itself (said in the log)."""
    needed, budget = factors_bytes(session.layers), _memory_budget(session)
    if needed <= budget:
        return False
    log.info(f"factors: every layer's would take {format_bytes(needed)} of the {format_bytes(budget)} they may: each "
             "layer is factorized as it is replaced, one at a time, in the loaded model itself")
    return True


def cmd_compress(args) -> int:
    # what can be refused without the model is refused before any heavy work
    check_export_target(args.output_dir, args.overwrite, args.model)
    results = _results_paths(args)
    request = read_rank_request(args.ranks) if args.ranks else None
    args.method = _compress_method(args, request)
    loaded, session, fisher_data, eval_data = _prepare(args)
    _calibrate(args, session, fisher_data, [canonical_method(args.method)], args.allocator)
    if request is not None:
        ranks = request.resolve(session.layers)
    elif args.param_ratio is not None:
        ranks = allocate(session, args.allocator, args.param_ratio, args.method, calibration=fisher_data)
    else:
        ranks = ranks_for(session, rank_ratio=args.rank_ratio)
    budget = budget_description(count_params(session.model), session, ranks)
    stream = _streams(session)
    scores: dict[str, dict] = {}
    if args.evaluate and stream:  # the dense model is about to be compressed in place: score it first
        scores["dense"] = _scored(args, "dense", session.model, loaded, eval_data).metrics
    compressed = session.compress(args.method, ranks, stream=stream)
    print(budget_line(budget) + (" (as factors; --merge stores every layer dense, keeping all parameters)"
                                 if args.merge else ""))
    if args.finetune_steps:
        compressed, tuned = finetune_compressed(compressed, loaded.tokenizer, fisher_data, args.finetune_steps,
                                                lr=args.finetune_lr, max_length=args.max_length,
                                                progress=_progress("fine-tuning", "steps"))
        log.info(f"fine-tuned {tuned.steps} steps: loss {tuned.first_loss:.3f} -> {tuned.last_loss:.3f}")
    extra: dict = {"source": loaded.source, "task": eval_data.task.name,
                   "command": args.command_line}
    if args.evaluate:
        for label, model in (("dense", session.model), (args.method, compressed)):
            if label not in scores:
                scores[label] = _scored(args, label, model, loaded, eval_data).metrics
        extra.update(scores=dict(sorted(scores.items(), key=lambda item: item[0] != "dense")),
                     **{"eval data": eval_data.source})
    if session.fisher is not None:
        extra["fisher"] = {"estimator": session.fisher.estimator, "examples": session.fisher.n_examples,
                           "skipped": session.fisher.n_skipped}
    if any(x is not None for x in (session.fisher, session.activations, session.kronecker)):
        # every statistic is taken over the same seeded sample of the calibration split
        used = len(fisher_data) if args.fisher_samples is None else min(args.fisher_samples, len(fisher_data))
        extra["calibration"] = calibration_record(fisher_data, used)
    saved = save_compressed(compressed, loaded.tokenizer, args.output_dir, extra, overwrite=args.overwrite,
                            source=args.model, merge=args.merge, max_shard_size=args.max_shard_size)
    print(f"saved to {saved}")
    if results is not None:
        settings = {k: v for k, v in vars(args).items()
                    if k not in ("func", "command_line", "token", "verbose", "quiet") and not callable(v)}
        report = {"command": args.command_line, "export": str(saved), "method": args.method, "merged": args.merge,
                  "scores": scores, "budget": budget, "ranks": ranks, "settings": settings, "versions": versions(),
                  "data": {"scored": data_description(eval_data), "fisher": data_description(fisher_data)},
                  "fisher": extra.get("fisher"), RESULT_MARKER: result_marker(results, "compress")}
        write_result_files({results[".json"]: json.dumps(report, indent=1, default=str)}, results[".json"])
        print(f"results: {results['.json']}")
    return 0




def check_choices(args) -> None:
    """Raise UsageError, before any model is loaded, for a task, method or allocator no registry knows (with the list)."""
    def known(option: str, value: str, lookup) -> None:
        try:
            lookup(value)
        except FwsvdError as exc:
            raise UsageError(f"{option} {value}: {exc}") from None

    if getattr(args, "task", None) in family_names():
        if not (args.train_file and args.validation_file):
            tasks = [t.name for t in TASKS.values() if t.family == args.task]
            raise UsageError(f"--task {args.task} names a family: give your own --train-file and --validation-file, "
                             f"or name one of its tasks ({', '.join(tasks)}).")
    elif getattr(args, "task", None) is not None:
        known("--task", args.task, get_task)
    for option, attribute in (("--method", "method"), ("--weighted", "weighted")):
        if getattr(args, attribute, None):
            known(option, getattr(args, attribute), canonical_method)
    for method in (m.strip() for m in getattr(args, "methods", "").split(",") if m.strip()):
        known("--methods", method, canonical_method)
    for allocator in (a.strip() for a in getattr(args, "allocators", "").split(",") if a.strip()):
        if allocator not in ALLOCATORS:
            raise UsageError(f"--allocators {allocator}: unknown allocator; choose from {', '.join(ALLOCATORS)}.")
    for option, attribute in (("--fisher-split", "fisher_split"), ("--eval-split", "eval_split")):
        split = getattr(args, attribute, None)
        if split is not None and getattr(args, "task", None) is not None and args.task not in family_names():
            spec = get_task(args.task)
            splits = spec.glue_file.split_files if spec.glue_file is not None else spec.hub_splits
            if split not in splits:
                raise UsageError(f"{option} {split}: task {args.task} has the splits {', '.join(splits)} "
                                 "(validation is another name of dev).")


def glue_root(data_dir: str | None, task: TaskSpec) -> str | None:
    """The GLUE folder that --data-dir means: the folder itself, or its parent when it is the task's own folder
    (glue/SST-2, holding train.tsv and dev.tsv)."""
    if not data_dir or task.glue_file is None:
        return data_dir
    folder, spec = Path(data_dir), task.glue_file
    if (folder / spec.folder).is_dir() or not any((folder / name).is_file() for name in spec.split_files.values()):
        return data_dir
    if folder.resolve().name == spec.folder:
        return str(folder.resolve().parent)
    raise UsageError(f"--data-dir {data_dir} holds the {task.name} files itself, in a folder not named {spec.folder}: "
                     f"give the folder that holds {spec.folder}/, or name this one {spec.folder}.")


def check_device(device: str | None) -> None:
    """Raise UsageError, before any work, when --device names no device this machine has."""
    if device is None:
        return
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r} is not a device: use cpu, cuda or cuda:N (none given: cuda when "
                         f"present).") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            built = "a PyTorch built without CUDA" if torch.version.cuda is None else "no usable CUDA GPU or driver"
            raise UsageError(f"--device {device}: this machine has {built}. Leave --device out or use --device cpu.")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device}: Apple's MPS is not available here. Leave --device out or use --device cpu.")


COMMANDS = {"layers": cmd_layers, "statistics": cmd_statistics, "sweep": cmd_sweep, "compress": cmd_compress,
            "predictor": cmd_predictor}


def run(args: argparse.Namespace) -> int:
    """Run the parsed command line: its exit code, every failure said in one line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    logger = logging.getLogger("fwsvd_core")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if args.quiet:
        hf_logging.disable_progress_bar()  # transformers' own bars (loading weights) too
    try:
        check_choices(args)
        if getattr(args, "task", None) is not None and args.task not in family_names():
            args.data_dir = glue_root(args.data_dir, get_task(args.task))
        check_device(args.device)
        _join_process_group(args)
        if process_group()[0] != 0:
            logger.setLevel(logging.WARNING)  # one process speaks for the group
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InsufficientMemoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MEMORY
    except (torch.OutOfMemoryError, MemoryError):
        print("error: out of memory. Use fewer or shorter examples (--fisher-samples, --batch-size, --max-length), "
              "or a machine or GPU with more memory.", file=sys.stderr)
        return EXIT_MEMORY
    except (FwsvdError, ValueError, OSError) as exc:  # OSError: a disk that fills, a folder that goes away
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        logger.removeHandler(handler)
        if bars_were_on:
            hf_logging.enable_progress_bar()
