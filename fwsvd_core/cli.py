"""Command line: `python -m fwsvd_core {layers,statistics,sweep,compress,predictor}`, its options and their help.

Only the options live here, so that `--help` and a mistyped option answer before the commands' imports (transformers,
scipy, the estimators) are paid for; `fwsvd_core.commands` runs what was asked.
"""
from __future__ import annotations

import argparse
import math
import re
import shlex
import sys

from fwsvd_core import __version__
from fwsvd_core.compression.allocation import ALLOCATORS
from fwsvd_core.compression.factorization import KRONECKER_DAMPING
from fwsvd_core.compression.methods import DEFAULT_METHOD, method_names
from fwsvd_core.demo import DEMOS, demo_spec, is_demo
from fwsvd_core.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_MEMORY, FwsvdError
from fwsvd_core.estimation.fisher import ESTIMATORS, FISHER_FORMS
from fwsvd_core.estimation.kronecker import DEFAULT_ITERATIONS
from fwsvd_core.estimation.passes import AUTO
from fwsvd_core.inputs.families import family_names
from fwsvd_core.inputs.memory import parse_bytes
from fwsvd_core.inputs.precision import DTYPE_CHOICES
from fwsvd_core.inputs.tasks import TASKS, get_task


def _whole_number(minimum: int, why: str = ""):
    """An argparse type: a whole number of at least `minimum` (`why` says what needs it)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more{why}, got {value}")
        return value
    return parse


def _whole_number_or_auto(minimum: int):
    """An argparse type: 'auto', or a whole number of at least `minimum`."""
    number = _whole_number(minimum)

    def parse(text: str) -> int | str:
        return AUTO if text == AUTO else number(text)
    return parse


def _memory_size(text: str) -> str:
    """An argparse type: a size such as 5G, 500M or a byte count, as `inputs.memory.parse_bytes` reads it."""
    try:
        parse_bytes(text)
    except FwsvdError:
        raise argparse.ArgumentTypeError(f"expected a size such as 5G or 500M, got {text!r}") from None
    return text


def _non_negative_number(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of 0 or more, got {text}")
    return value


def _ratio_list(text: str) -> list[float]:
    """An argparse type: comma-separated ratios, each in (0, 1]; '' gives none."""
    values = []
    for part in (x.strip() for x in text.split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,0.3, got {part!r}") from None
        if not 0 < value <= 1:
            raise argparse.ArgumentTypeError(f"each ratio must be in (0, 1], got {part}")
        values.append(value)
    return values


# the names Hugging Face's scripts and `TrainingArguments` give the same things
DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
SPLIT_ALIASES = {"validation": "dev", "valid": "dev", "val": "dev", "eval": "dev", "training": "train"}


def _dtype(text: str) -> str:
    """An argparse type: a dtype name, bf16/fp16/fp32 spelt as in Hugging Face's scripts."""
    name = text.strip().lower().removeprefix("torch.")
    return DTYPE_ALIASES.get(name, name)


def _split(text: str) -> str:
    """An argparse type: a split name; `validation`, as the hub and Hugging Face's scripts call it, is the dev split."""
    name = text.strip().lower()
    return SPLIT_ALIASES.get(name, name)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "--model-name-or-path", required=True,
                   help=f"a built-in demo ({', '.join(DEMOS)}: MiniLM-L6 fine-tuned by this tool on first use, "
                        "minutes, then reused), a hub id, a local directory, or a compressed model directory")
    p.add_argument("--device", default=None, help="cuda or cpu (none given: cuda when present)")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model (off by default)")
    p.add_argument("--dtype", "--torch-dtype", default="auto", type=_dtype, choices=DTYPE_CHOICES,
                   help="weights' dtype (bf16, fp16 and fp32 name them too): auto keeps the checkpoint's (the demos "
                        "are float32); statistics and decompositions are computed in float32 either way")
    p.add_argument("--bf16", dest="dtype", action="store_const", const="bfloat16", help="the same as --dtype bfloat16")
    p.add_argument("--fp16", dest="dtype", action="store_const", const="float16", help="the same as --dtype float16")
    p.add_argument("--revision", default=None, help="hub branch, tag or commit of --model (none given: main)")
    p.add_argument("--token", default=None, help="Hugging Face access token for gated or private models (none given: "
                                                 "$HF_TOKEN or the one saved by `hf auth login`)")
    p.add_argument("--device-map", default=None,
                   help="'auto': accelerate spreads the layers over the GPUs, then the CPU, then the disk, for a "
                        "model larger than one device (replaces --device; saved models only)")


def task_names_by_family() -> str:
    """Every registered task, grouped by its family ("sequence-classification: cola, sst2, ...; ...")."""
    by_family = {name: [t.name for t in TASKS.values() if t.family == name] for name in family_names()}
    return "; ".join(f"{name}: {', '.join(tasks)}" for name, tasks in by_family.items() if tasks)


def _add_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", "--task-name", default=None,
                   help=f"the task, by family: {task_names_by_family()} (none given with a built-in demo: the demo's "
                        f"own). With --train-file and --validation-file, a "
                        f"family's name ({', '.join(family_names())}) makes a task of your own files")
    p.add_argument("--train-file", default=None,
                   help="your own file for the Fisher and calibration split: CSV/TSV/JSON with the task's text columns "
                        "and 'label' (sequence tasks), CoNLL or JSON tokens and tags (token tasks), text or JSON lines "
                        "(language models)")
    p.add_argument("--validation-file", default=None, help="your own file for the scored split, as --train-file")
    p.add_argument("--data-source", default="auto", choices=["auto", "hub", "glue", "local", "synthetic"],
                   help="auto: the local folder when one is set, else the hub (a token task offline: the generated "
                        "one); glue or local: --data-dir; synthetic: the generated stand-in task")
    p.add_argument("--data-dir", default=None, help="a GLUE-format folder, or the task's own folder in it such as "
                                                   "glue/SST-2 (none given: $FWSVD_DATA_DIR)")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="leave out (and count) data rows with a wrong number of fields, a missing text or label, an "
                        "unclosed quote that takes in the lines after it, or a lone carriage return, instead of "
                        "stopping with their line numbers")
    p.add_argument("--fisher-split", default="train", type=_split,
                   help="the split the Fisher and calibration statistics come from")
    p.add_argument("--eval-split", default="dev", type=_split, help="the split that is scored (validation names it too)")
    p.add_argument("--fisher-samples", "--calib-samples", "--nsamples", type=_whole_number(1), default=256,
                   help="training examples for the Fisher and the calibration statistics (seeded sample); for a "
                        "language model, windows of --max-length tokens (the LLM papers' N sequences)")
    p.add_argument("--estimator", default="per-sample", choices=ESTIMATORS,
                   help="per-sample: each example's squared gradient (the definition); batch: squared mini-batch "
                        "gradients, cheaper and biased low")
    p.add_argument("--fisher-form", default="auto", choices=("auto", *FISHER_FORMS),
                   help="full: every weight's Fisher; profiles: each layer's row and column sums only, in the same "
                        "pass (the low-memory Fisher: enough for FWSVD, not for TFWSVD or the predictor); auto: full "
                        "where the memory estimate says it fits")
    p.add_argument("--allow-degenerate-fisher", action="store_true",
                   help="continue when the Fisher is all zero or most examples gave no finite gradient "
                        "(Fisher-weighted methods then behave like plain SVD)")
    p.add_argument("--seed", type=_whole_number(0), default=0, help="seed of the example samples")
    p.add_argument("--max-length", "--max-seq-length", "--seq-len", type=_whole_number(1), default=128,
                   help="tokens per example; longer ones are cut (at most the model's positions); for a language "
                        "model, the length L of each window its text is cut into (the LLM papers use 2048)")
    p.add_argument("--blocks-per-pass", type=_whole_number_or_auto(1), default=AUTO, metavar="N|auto",
                   help="compute the statistics (Fisher, activations, Kronecker factors) for N blocks per pass over the "
                        "calibration data, each group cached as it is finished (the Kronecker factors then read back "
                        "one layer at a time): lower peak memory, one pass per group. auto (the default): every block "
                        "in one pass when the memory estimate says the statistics fit in half the memory available, "
                        "else the largest groups that do, said in the log")
    p.add_argument("--activation-checkpointing", choices=("auto", "on", "off"), default="auto",
                   help="while the Fisher and Kronecker statistics are estimated, keep only each block's input for the "
                        "backward pass and run the block again there: the same statistics, about one more forward "
                        "pass of time, the memory of one block's activations instead of every block's. auto (the "
                        "default): on when the memory estimate of a batch's activations exceeds half the memory "
                        "available, said in the log")
    p.add_argument("--eval-subsample", type=_whole_number(2, " (a confidence interval needs two examples)"), default=None,
                   help="score a random subset of this many examples (reports a 95%% CI); none given: all")
    p.add_argument("--batch-size", "--per-device-eval-batch-size", type=_whole_number(1), default=64,
                   help="examples per batch when scoring")


def _add_compression_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--finetune-steps", type=_whole_number(0), default=0,
                   help="fine-tune each compressed model this many steps on the Fisher split (the paper's 'with "
                        "fine-tuning')")
    p.add_argument("--finetune-lr", type=float, default=5e-5, help="learning rate of that fine-tuning")
    p.add_argument("--solver-iters", type=int, default=30, help="iterative methods (TFWSVD): most iterations per "
                                                                "layer and rank")
    p.add_argument("--solver-seconds", type=float, default=3.0, help="iterative methods (TFWSVD): time budget per "
                                                                     "layer and rank")
    _add_kronecker_args(p)


def _add_kronecker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kronecker-iterations", type=_whole_number(0), default=DEFAULT_ITERATIONS,
                   help="Kronecker-factored methods (kfac, gfwsvd): power iterations from K-FAC to the Kronecker "
                        "product nearest to the Fisher, one pass over the --fisher-samples each (0: K-FAC only)")
    p.add_argument("--damping", type=_non_negative_number, default=KRONECKER_DAMPING,
                   help="Kronecker-factored methods: added to each factor, relative to the mean of its diagonal")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (not for flags, required options and options without one); the
    epilog (the exit codes) kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if aliases := _long_options(action)[1:]:
            text += f" (also {', '.join(aliases)})"
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if shown and not action.required and action.option_strings and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text

    def _format_action_invocation(self, action: argparse.Action) -> str:
        """An option under its own name (the short one, then the first long one); its older names follow its help."""
        longs = _long_options(action)
        if len(longs) < 2:
            return super()._format_action_invocation(action)
        shown = [o for o in action.option_strings if not o.startswith("--")] + longs[:1]
        metavar = "" if action.nargs == 0 else " " + self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join(o + metavar for o in shown)


def _long_options(action: argparse.Action) -> list[str]:
    return [o for o in action.option_strings if o.startswith("--")]


class _Parser(argparse.ArgumentParser):
    """Every dashed option also answers to its underscore spelling (`--model_name_or_path`, `--output_dir`), as
    Hugging Face's scripts write them; the help shows the dashed one."""

    def parse_known_args(self, args=None, namespace=None):
        given = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args([self._dashed(a) for a in given], namespace)

    def error(self, message: str):
        """argparse's message, an option named by its own name only (not `--max-length/--max-seq-length`)."""
        super().error(re.sub(r"argument (--[\w-]+)(?:/--[\w-]+)+", r"argument \1", message))

    def _dashed(self, arg: str) -> str:
        """`--foo_bar[=value]` as `--foo-bar[=value]` where only the dashed option exists (anything else unchanged)."""
        if not arg.startswith("--") or "_" not in arg:
            return arg
        name, eq, value = arg.partition("=")
        dashed = "--" + name[2:].replace("_", "-")
        if name in self._option_string_actions or dashed not in self._option_string_actions:
            return arg
        return dashed + eq + value


def _noise_options(parser: argparse.ArgumentParser, default) -> None:
    """-v and -q; the subcommands take them too (default SUPPRESS there, so they do not undo the main parser's)."""
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", default=default, help="also print debugging messages")
    noise.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="print only results, warnings and errors (no progress bars)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m fwsvd_core", description="Fisher-weighted low-rank compression.",
                                     epilog=EXIT_CODES, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"fwsvd-studio {__version__}")
    _noise_options(parser, False)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, task: bool = True):
        p = sub.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)
        _noise_options(p, argparse.SUPPRESS)
        _add_model_args(p)
        if task:
            _add_task_args(p)
        return p

    command("layers", "list the compressible layers of a model", task=False)
    p = command("statistics", "estimate and cache the Fisher (and calibration statistics): data-parallel when "
                "launched by torchrun or accelerate launch")
    p.add_argument("--activations", action="store_true",
                   help="also the input statistics that asvd and svd-llm need")
    p.add_argument("--kronecker", action="store_true", help="also the Kronecker factors that kfac and gfwsvd need")
    p.add_argument("--kronecker-iterations", type=_whole_number(0), default=DEFAULT_ITERATIONS,
                   help="power iterations of the Kronecker factors (see sweep --help)")
    p = command("sweep", "score every method at every ratio")
    _add_compression_args(p)
    p.add_argument("--methods", default="svd,fwsvd-input,fwsvd-output",
                   help=f"comma-separated: {', '.join(method_names())}")
    p.add_argument("--ratios", type=_ratio_list, default="0.5,0.3,0.15",
                   help="rank ratios r/min(out,in), comma-separated ('' for none)")
    p.add_argument("--param-ratios", type=_ratio_list, default=None,
                   help="parameter budgets as KEPT / original of the compressible layers, comma-separated (0.6 keeps "
                        "60%% and removes 40%%)")
    p.add_argument("--allocators", default="uniform", help=f"for --param-ratios, comma-separated: {', '.join(ALLOCATORS)}")
    p.add_argument("--output-dir", "--out", dest="output_dir", default="results/sweep",
                   help="where the results go: .csv and .json are appended to this name (a folder receives sweep.csv "
                        "and sweep.json); only files this tool wrote are replaced")
    p = command("compress", "compress and save a model")
    _add_compression_args(p)
    p.add_argument("--method", default=None,
                   help=f"{', '.join(method_names())} (default: the one a --ranks file names, else {DEFAULT_METHOD})")
    p.add_argument("--allocator", default="uniform", choices=ALLOCATORS, help="how --param-ratio is met")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--rank-ratio", type=float, help="one rank ratio r/min(out,in) for every layer")
    group.add_argument("--param-ratio", type=float,
                       help="the budget as parameters KEPT / original, of the compressible layers: 0.6 keeps 60%% of "
                            "them and removes 40%% (what LLM papers call '40%% compression'); the output states both, "
                            "and what it is of the whole model")
    group.add_argument("--ranks",
                       help="a rank file: a compressed export of this tool (its folder or its fwsvd_ranks.json), the "
                            "rank editor's JSON {'method': ..., 'ranks': {layer: rank}}, a plain {layer: rank}, or peft's "
                            "{'rank_pattern': {pattern: rank}, 'r': default} (a pattern is a layer-name suffix such as "
                            "'query' or a regular expression such as 'layer.0.*dense'; layers not matched get r, else "
                            "keep full rank)")
    p.add_argument("--output-dir", "--save", dest="output_dir", required=True,
                   help="a new or empty folder to write the compressed model to (a non-empty folder is refused)")
    p.add_argument("--overwrite", "--overwrite-output-dir", action="store_true",
                   help="replace an earlier export of this tool in --output-dir (never any other folder)")
    p.add_argument("--evaluate", "--do-eval", action="store_true",
                   help="score dense and compressed before saving: the scores go into the export's model card and, with "
                        "the settings, versions and data, into a results JSON beside the export (--results-file)")
    p.add_argument("--results-file", default=None,
                   help="where --evaluate writes its results JSON (default: OUTPUT_DIR.results.json beside the export; "
                        "only a file this tool wrote is replaced)")
    p.add_argument("--merge", action="store_true",
                   help="store each layer dense (its rank-r product) in the original architecture: loads anywhere "
                        "without custom code, saves no parameters")
    p.add_argument("--max-shard-size", default="5G", type=_memory_size,
                   help="the largest weights file of the export (e.g. 2G, 500M): larger weights go into numbered shards "
                        "and their index, written one at a time, so that no second copy of a large model is made")
    p = command("predictor", "validate the per-layer predictor of SVD failure against measured drops")
    p.add_argument("--rank-ratio", type=float, default=0.1, help="the rank ratio each layer is compressed to alone")
    p.add_argument("--weighted", default="fwsvd-input", help="the Fisher-weighted method SVD is compared with")
    _add_kronecker_args(p)
    p.add_argument("--output-dir", "--out", dest="output_dir", default="results/predictor",
                   help="where the results go: .csv, .json and .md are appended to this name (a folder receives "
                        "predictor.*); only files this tool wrote are replaced")
    return parser


EXIT_CODES = f"""exit codes:
  0   done
  2   the command line is wrong (unknown option, missing argument, a value out of range or that this model
      or machine cannot take: --max-length, --device)
  {EXIT_ERROR}   a problem with the input or the run, explained in one line: model, data, ranks, folder, Fisher
  {EXIT_MEMORY}   not enough memory (estimated before the work, or run out of during it)
  {EXIT_INTERRUPTED} interrupted (Ctrl-C)"""


def _without_secrets(argv: list[str]) -> list[str]:
    """The command line as reports and model cards repeat it: an access token is never written down."""
    shown, hide = [], False
    for arg in argv:
        shown.append("***" if hide else "--token=***" if arg.startswith("--token=") else arg)
        hide = arg == "--token"
    return shown


def _default_task(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--task is required, except with a built-in demo: then it is the demo's own task, and a task of another family
    than the demo's is refused (a language model has no labels to classify with)."""
    if not is_demo(args.model):
        if args.task is None:
            parser.error("the following arguments are required: --task")
        return
    try:
        own = get_task(demo_spec(args.model).task)
    except FwsvdError as exc:
        if args.task is None:
            parser.error(f"argument --model: {exc}")
        return  # loading the model says which demos there are
    if args.task is None:
        args.task = own.name
        return
    try:
        given = get_task(args.task)
    except FwsvdError:
        return  # an unknown task, or a family's name, is explained with the lists of both
    if given.family != own.family:
        parser.error(f"argument --task: {args.model} is a {own.family} model (fine-tuned on {own.name}); task "
                     f"{given.name} is {given.family}. Leave --task out for the demo's own task.")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose and args.quiet:  # one before the command, the other after it
        parser.error("argument -q/--quiet: not allowed with argument -v/--verbose")
    args.command_line = "python -m fwsvd_core " + shlex.join(_without_secrets(sys.argv[1:] if argv is None else argv))
    if hasattr(args, "task"):
        _default_task(parser, args)
    from fwsvd_core.commands import run

    return run(args)
